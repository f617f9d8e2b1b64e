# -*- test-case-name: chatd.test.test_logs -*-
"""
The log an operator reads: JSON when asked for, and the line that says where
chatd listens.

What chatd logs about people is their name and address, what they did
(registered, logged in, failed to, was locked out), never a password, a
private key or what they wrote: the messages are end-to-end encrypted, and the
log must not be the place they leak from.

C{--log-format json} works with twistd's own logging rather than around it:
twistd asks the application for an L{ILogObserver} component before it falls
back to its own (see C{twisted.application.app.AppLogger.start}), so the
service puts one there, writing where twistd would (C{--logfile}, or standard
output), one JSON object per line (L{twisted.logger.eventAsJSON}).
"""

import re
import sys

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

from chatd.client.connection import certificateFingerprint

log = Logger()


def jsonObserver(twistdOptions=None) -> ILogObserver:
    """
    An observer writing one JSON object per line where twistd would write its
    log: the file of C{--logfile}, or standard output when there is none or
    it is C{-}.

    @param twistdOptions: twistd's own options, or L{None}.
    """
    path = twistdOptions.get("logfile") if twistdOptions is not None else None
    out = sys.stdout if not path or path == "-" else LogFile.fromFullPath(path)
    return jsonFileLogObserver(out, recordSeparator="")


class LoggedService(MultiService):
    """
    The top of chatd's service tree when the log is JSON: it hands its
    L{ILogObserver} to the twistd application it is put in.

    @ivar observer: the observer twistd is to log to.
    """

    def __init__(self, observer: ILogObserver):
        MultiService.__init__(self)
        self.observer = observer

    def setServiceParent(self, parent):
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.observer)
        MultiService.setServiceParent(self, parent)


def listenerURL(door: str, port) -> str:
    """
    How to reach a listener: C{http://host:port/} for the web door and the
    metrics, C{door host:port} otherwise.

    @param port: the L{IListeningPort}.
    """
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return "%s %s" % (door, address)
    if ":" in host:
        host = "[%s]" % (host,)
    if door in ("web", "metrics"):
        return "%s http://%s:%d/" % (door, host, address.port)
    return "%s %s:%d" % (door, host, address.port)


def certificateOf(description: str):
    """
    The certificate file of an C{ssl:} endpoint string (its C{certKey}, or its
    C{privateKey} holding both), or L{None} for other endpoints.
    """
    if not description.startswith("ssl:"):
        return None
    arguments = dict(
        (name, value.replace("\\:", ":").replace("\\\\", "\\"))
        for name, value in re.findall(r"(\w+)=((?:\\.|[^:])*)", description))
    return arguments.get("certKey") or arguments.get("privateKey")


def serverFingerprint(path: str):
    """
    The SHA-256 of the PEM certificate in C{path} as the terminal client prints
    it and pins it in C{known_servers}, or L{None} when it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
    except (OSError, ValueError):
        return None
    return certificateFingerprint(der)


def logListening(listening, certificatePath=None) -> None:
    """
    Log one line naming every listener and, when chatd has a TLS certificate,
    its SHA-256 fingerprint as the terminal client prints it, so that an
    operator can hand it to the people who connect.

    @param listening: C{(door, port)} pairs.
    @param certificatePath: the PEM certificate of the TLS doors, or L{None}.
    """
    where = ", ".join(listenerURL(door, port) for door, port in listening)
    fingerprint = serverFingerprint(certificatePath) if certificatePath else None
    if fingerprint is None:
        log.info("chatd listening: {listeners}", listeners=where)
    else:
        log.info("chatd listening: {listeners}; TLS certificate SHA-256 {fingerprint}",
                 listeners=where, fingerprint=fingerprint)
