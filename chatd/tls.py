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
"""

from OpenSSL import SSL

# ECDHE for forward secrecy, then only AEAD bulk ciphers; no static-RSA or
# finite-field DHE key exchange, no CBC, no CCM.
AEAD_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL"


def restrict(contextFactory):
    """
    Limit the protocol versions and TLS 1.2 suites of a server's context.

    @param contextFactory: an L{IOpenSSLContextFactory} whose C{getContext}
        returns the context its connections are made from (as Twisted's
        C{CertificateOptions} does: it makes one and keeps it).
    @return: C{contextFactory}
    """
    context = contextFactory.getContext()
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(AEAD_CIPHERS)
    return contextFactory


class RestrictedTLSReactor:
    """
    A reactor like the one it wraps, except that C{listenSSL} first restricts
    the context of the listener with L{restrict}.
    """

    def __init__(self, reactor):
        self._reactor = reactor

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        return self._reactor.listenSSL(port, factory, restrict(contextFactory), backlog,
                                       interface)
