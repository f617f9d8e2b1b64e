# -*- test-case-name: chatd.test.test_tls -*-
"""
Tests for L{chatd.tls}.
"""

import os

from OpenSSL import SSL
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from chatd.datadir import prepare
from chatd.endpoints import defaultTLSEndpoint
from chatd.tls import RestrictedTLSReactor


def handshake(serverContext, clientContext):
    """
    Run a TLS handshake in memory between a server and a client made from the
    given contexts.

    @return: the client's L{SSL.Connection} once both ends are done.
    @raise SSL.Error: when either end refuses.
    """
    server = SSL.Connection(serverContext, None)
    server.set_accept_state()
    client = SSL.Connection(clientContext, None)
    client.set_connect_state()
    done = set()
    for _ in range(10):
        for name, end in [("client", client), ("server", server)]:
            if name not in done:
                try:
                    end.do_handshake()
                    done.add(name)
                except SSL.WantReadError:
                    pass
        for source, sink in [(client, server), (server, client)]:
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
    if done != {"client", "server"}:
        raise AssertionError("handshake did not finish")
    return client


class RestrictedTLSTests(SynchronousTestCase):
    """
    Listeners made through L{RestrictedTLSReactor} offer TLS 1.2 with AEAD
    suites only, and TLS 1.3.
    """

    def setUp(self):
        self.reactor = MemoryReactor()
        dataDir = os.path.join(self.mktemp(), "data")
        prepare(dataDir)
        endpoint = serverFromString(RestrictedTLSReactor(self.reactor),
                                    defaultTLSEndpoint(dataDir, 4017))
        endpoint.listen(None)
        [(_, _, self.contextFactory, _, _)] = self.reactor.sslServers
        self.context = self.contextFactory.getContext()

    def client(self, version, ciphers=None):
        """
        A client context that speaks only TLS C{version}, with C{ciphers} if
        given.
        """
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(version)
        context.set_max_proto_version(version)
        if ciphers is not None:
            context.set_cipher_list(ciphers)
        return context

    def test_cipherList(self):
        """
        Besides TLS 1.3's own suites, only ECDHE suites with AES-GCM or
        ChaCha20-Poly1305 are offered.
        """
        names = SSL.Connection(self.context).get_cipher_list()
        older = [name for name in names if not name.startswith("TLS_")]
        self.assertTrue(older)
        for name in older:
            self.assertTrue(name.startswith("ECDHE-"), name)
            self.assertTrue("-GCM-" in name or "CHACHA20-POLY1305" in name, name)

    def test_aeadHandshake(self):
        """
        A TLS 1.2 client gets an AEAD suite, and a TLS 1.3 client TLS 1.3.
        """
        client = handshake(self.context, self.client(SSL.TLS1_2_VERSION))
        self.assertEqual(client.get_protocol_version_name(), "TLSv1.2")
        self.assertIn("GCM", client.get_cipher_name())
        client = handshake(self.context, self.client(SSL.TLS1_3_VERSION))
        self.assertEqual(client.get_protocol_version_name(), "TLSv1.3")

    def test_cbcRefused(self):
        """
        A TLS 1.2 client that offers only CBC suites is refused.
        """
        cbc = b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA"
        self.assertRaises(SSL.Error, handshake, self.context,
                          self.client(SSL.TLS1_2_VERSION, cbc))

    def test_otherCallsPassThrough(self):
        """
        Everything else is the wrapped reactor's.
        """
        wrapper = RestrictedTLSReactor(self.reactor)
        wrapper.listenTCP(4019, None)
        self.assertEqual(self.reactor.tcpServers[0][0], 4019)
