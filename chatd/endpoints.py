# -*- test-case-name: chatd.test.test_tap -*-
"""
The doors' listeners as endpoint strings: each door's default, a list of them
in the config file, and an C{ssl:} listener given the data directory's own key
and certificate.

Its own module because how a listener is written down is one idea of its own
among the settings of L{chatd.config}, which uses it.
"""

import re

from chatd.datadir import tlsPaths


def parseEndpoints(value):
    """
    A list of endpoint strings, one per line or separated by commas (the
    config-file form of a repeated C{--binary}).

    @return: a L{tuple} of endpoint strings
    """
    endpoints = tuple(part.strip() for part in re.split(r"[,\n]", value))
    endpoints = tuple(part for part in endpoints if part)
    if not endpoints:
        raise ValueError("expected at least one endpoint")
    return endpoints


def defaultTLSEndpoint(dataDir, port):
    """
    A TLS listener on C{port} with the data directory's own key and certificate:
    the default of the binary (4017) and text (4018) doors.
    """
    return withDataDirCertificate("ssl:%d" % (port,), dataDir)


# An argument of an endpoint string that names a key or certificate file: at
# the start of an argument, after a ":" that no backslash escapes.
_KEY_ARGUMENT = re.compile(r"(?<!\\):(privateKey|certKey)=")


def withDataDirCertificate(description, dataDir):
    """
    Give an C{ssl:} endpoint that names neither a private key nor a
    certificate the data directory's own, as the default listeners have
    (Twisted's own default, C{server.pem} in the current directory, is never
    what is meant); leave any other endpoint as it is.
    """
    if not description.startswith("ssl:") or _KEY_ARGUMENT.search(description):
        return description
    privateKey, certificate = tlsPaths(dataDir)
    return "%s:privateKey=%s:certKey=%s" % (
        description,
        quoteEndpointArgument(privateKey),
        quoteEndpointArgument(certificate),
    )


# The listeners of each door when none is configured. The web door defaults to
# plain HTTP on loopback: browsers treat localhost as a secure context, which
# WebCrypto needs, and a person puts TLS in front for anything else.
DEFAULT_LISTENERS = {
    "binary": lambda dataDir: defaultTLSEndpoint(dataDir, 4017),
    "text": lambda dataDir: defaultTLSEndpoint(dataDir, 4018),
    "web": lambda dataDir: "tcp:8017:interface=127.0.0.1",
}
DISABLED = "none"


def quoteEndpointArgument(text):
    """
    Escape C{text} for use as one argument of an endpoint string, in which C{:}
    separates arguments and C{\\} escapes.
    """
    return text.replace("\\", "\\\\").replace(":", "\\:")
