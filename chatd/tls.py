# -*- test-case-name: chatd.test.test_tls -*-
"""
What every TLS listener of chatd offers: TLS 1.2 or later, and under TLS 1.2
only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305).
TLS 1.3 has nothing else, so its suites are left as OpenSSL has them.

Twisted's C{ssl:} endpoint strings have no option for ciphers, and its default
list still offers CBC suites under TLS 1.2. So that listeners stay plain
endpoint strings (wrapped in C{haproxy:} or not), the reactor the endpoints
are parsed with is wrapped: every C{listenSSL} through it gets its context
restricted first.

The key-exchange groups are chatd's too (C{tls-groups}): by default the
post-quantum hybrid X25519MLKEM768 where this OpenSSL has it, then X25519,
P-256 and P-384. The hybrid is what keeps traffic recorded today from being
read by a quantum computer of the future: the envelopes inside it are sealed
with RSA-OAEP, which such a computer would also break, so a transport it
could decrypt would give away message contents as well as passwords and
metadata. It costs memory only during the handshake: OpenSSL keeps the
client's ML-KEM-768 public key (about 6 KiB) as long as it carries the
connection, and every listener made here hands its TLS 1.3 connections to
chatd's own record layer once the handshake is done, which frees that with the
rest of OpenSSL's state for the connection (L{chatd.tlshandoff}).
"""

from typing import Any

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL

from chatd.tlshandoff import HandingOffTLSFactory, keyLogged

# ECDHE for forward secrecy, then only AEAD bulk ciphers; no static-RSA or
# finite-field DHE key exchange, no CBC, no CCM.
AEAD_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"

# The key-exchange groups in the server's order of preference. A name after
# "?" is left out where this OpenSSL does not know it (the hybrid needs 3.5).
DEFAULT_GROUPS = "?X25519MLKEM768:X25519:P-256:P-384"

# pyOpenSSL has no call for the groups list; cryptography's bindings, which
# pyOpenSSL itself is built on, have SSL_CTX_set1_curves_list (the old name
# of SSL_CTX_set1_groups_list, which takes every group, hybrids included).
_lib = Binding().lib


def _setGroups(context: SSL.Context, names: str) -> bool:
    """
    Give C{context} the key-exchange groups C{names} (separated by C{:}).

    @return: whether OpenSSL took them all.
    """
    return _lib.SSL_CTX_set1_curves_list(context._context, names.encode("ascii")) == 1


def knownGroups(description: str) -> str:
    """
    The groups of a C{tls-groups} setting that this OpenSSL knows, in order.

    @param description: group names separated by C{:}; a name written
        C{?NAME} is left out when this OpenSSL does not know it.
    @return: the names as OpenSSL takes them, separated by C{:}.
    @raise ValueError: for an unknown name without C{?}, or when no name is
        left.
    """
    names = []
    probe = SSL.Context(SSL.TLS_METHOD)
    for part in description.split(":"):
        part = part.strip()
        name = part.lstrip("?")
        if not name.isascii() or not name:
            raise ValueError("%r is not a key-exchange group name" % (part,))
        if _setGroups(probe, name):
            names.append(name)
        elif not part.startswith("?"):
            raise ValueError("%r is not a key-exchange group this OpenSSL knows" % (name,))
    if not names:
        raise ValueError("none of %r is a key-exchange group this OpenSSL knows" % (description,))
    return ":".join(names)


def restrict(contextFactory: Any, groups: str = DEFAULT_GROUPS) -> Any:
    """
    Limit the protocol versions and TLS 1.2 suites of a server's context,
    give it its key-exchange groups, and have it log each connection's
    secrets to the connection's L{chatd.tlshandoff.HandingOffTLS}.

    @param contextFactory: an L{IOpenSSLContextFactory} whose C{getContext}
        returns the context its connections are made from (as Twisted's
        C{CertificateOptions} does: it makes one and keeps it).
    @param groups: the C{tls-groups} setting (see L{knownGroups}).
    @return: C{contextFactory}
    """
    context = contextFactory.getContext()
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(AEAD_CIPHERS)
    if not _setGroups(context, knownGroups(groups)):
        raise ValueError("OpenSSL refused the key-exchange groups %r" % (groups,))
    context.set_keylog_callback(keyLogged)
    return contextFactory


class RestrictedTLSReactor:
    """
    A reactor like the one it wraps, except that C{listenSSL} restricts the
    context of the listener with L{restrict} and listens with a
    L{HandingOffTLSFactory}, where the reactor's own would use Twisted's
    C{TLSMemoryBIOFactory}.
    """

    def __init__(self, reactor: Any, groups: str = DEFAULT_GROUPS) -> None:
        self._reactor = reactor
        self._groups = groups

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        tls = HandingOffTLSFactory(restrict(contextFactory, self._groups), factory)
        return self._reactor.listenTCP(port, tls, backlog, interface)
