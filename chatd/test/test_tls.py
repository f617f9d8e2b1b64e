# -*- test-case-name: chatd.test.test_tls -*-
"""
Tests for L{chatd.tls}.
"""

import os
from typing import cast

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from chatd.datadir import prepare
from chatd.endpoints import defaultTLSEndpoint
from chatd.tls import DEFAULT_GROUPS, RestrictedTLSReactor, knownGroups
from chatd.tlshandoff import HandingOffTLSFactory

_binding = Binding()


def groupName(connection):
    """
    The key-exchange group a finished handshake used, as OpenSSL names it.
    """
    return _binding.ffi.string(_binding.lib.SSL_get0_group_name(connection._ssl)).decode()


def withGroups(context, groups):
    """
    Give a client C{context} its own key-exchange groups, the way a client
    that offers only those would.
    """
    assert _binding.lib.SSL_CTX_set1_curves_list(context._context, groups.encode()) == 1
    return context


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
        self.context = self.serverContext()

    def serverContext(self, *groups):
        """
        The context of an C{ssl:} listener made through
        L{RestrictedTLSReactor}, given C{groups} if any.
        """
        reactor = MemoryReactor()
        dataDir = os.path.join(self.mktemp(), "data")
        prepare(dataDir)
        endpoint = serverFromString(RestrictedTLSReactor(reactor, *groups),
                                    defaultTLSEndpoint(dataDir, 4017))
        endpoint.listen(None)
        [(_, factory, _, _)] = reactor.tcpServers
        return cast(HandingOffTLSFactory, factory).contextFactory.getContext()

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

    def test_hybridPreferred(self):
        """
        A TLS 1.3 client that offers OpenSSL's default groups agrees its keys
        with the post-quantum hybrid, where this OpenSSL has it; a TLS 1.2
        client, which cannot use the hybrid, with X25519.
        """
        hybrid = "X25519MLKEM768" in knownGroups("?X25519MLKEM768:X25519").split(":")
        client = handshake(self.context, self.client(SSL.TLS1_3_VERSION))
        self.assertEqual(groupName(client), "X25519MLKEM768" if hybrid else "x25519")
        client = handshake(self.context, self.client(SSL.TLS1_2_VERSION))
        self.assertEqual(groupName(client), "x25519")

    def test_x25519WithoutHybrid(self):
        """
        A client that does not offer the hybrid (an older OpenSSL's default
        groups) agrees its keys with X25519.
        """
        client = handshake(self.context, withGroups(self.client(SSL.TLS1_3_VERSION),
                                                    "X25519:P-256:P-384"))
        self.assertEqual(groupName(client), "x25519")

    def test_otherGroupsStillServed(self):
        """
        A client that offers only P-256, only P-384 or, where this OpenSSL
        has it, only the hybrid X25519MLKEM768 still gets a connection.
        """
        for offered, agreed in [("P-256", "secp256r1"), ("P-384", "secp384r1"),
                                ("X25519MLKEM768", "X25519MLKEM768")]:
            if offered not in knownGroups("?" + offered + ":X25519").split(":"):
                continue
            client = handshake(self.context,
                               withGroups(self.client(SSL.TLS1_3_VERSION), offered))
            self.assertEqual(groupName(client), agreed)

    def test_configuredGroups(self):
        """
        The groups given to L{RestrictedTLSReactor} are the listener's, in
        its order: with P-256 alone, a default client gets P-256 (after a
        retry with the key share asked for), and a client that offers only
        X25519 is refused.
        """
        context = self.serverContext("P-256")
        client = handshake(context, self.client(SSL.TLS1_3_VERSION))
        self.assertEqual(groupName(client), "secp256r1")
        self.assertRaises(SSL.Error, handshake, context,
                          withGroups(self.client(SSL.TLS1_3_VERSION), "X25519"))

    def test_listensWithHandOff(self):
        """
        C{listenSSL} listens on TCP with a L{HandingOffTLSFactory} around the
        given factory, on the given port, backlog and interface.
        """
        reactor = MemoryReactor()
        wrapped = Factory()
        contextFactory = CertificateOptions()
        RestrictedTLSReactor(reactor).listenSSL(4017, wrapped, contextFactory, 7, "127.0.0.2")
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, backlog, interface), (4017, 7, "127.0.0.2"))
        assert isinstance(factory, HandingOffTLSFactory)
        self.assertIs(factory.wrappedFactory, wrapped)
        self.assertIs(factory.contextFactory, contextFactory)

    def test_otherCallsPassThrough(self):
        """
        Everything else is the wrapped reactor's.
        """
        reactor = MemoryReactor()
        wrapper = RestrictedTLSReactor(reactor)
        wrapper.listenTCP(4019, None)
        self.assertEqual(reactor.tcpServers[0][0], 4019)


class KnownGroupsTests(SynchronousTestCase):
    """
    L{knownGroups} checks a C{tls-groups} setting against this OpenSSL.
    """

    def test_default(self):
        """
        The default lists the hybrid first where OpenSSL knows it, then
        X25519, P-256 and P-384.
        """
        names = knownGroups(DEFAULT_GROUPS).split(":")
        self.assertEqual(names[-3:], ["X25519", "P-256", "P-384"])
        self.assertIn(names[0], ("X25519MLKEM768", "X25519"))

    def test_optionalUnknownLeftOut(self):
        """
        An unknown group written C{?NAME} is left out.
        """
        self.assertEqual(knownGroups("?NO-SUCH-GROUP:X25519: P-256"), "X25519:P-256")

    def test_unknownRefused(self):
        """
        An unknown group without C{?}, an empty name, or a list with no known
        group left is refused, naming it.
        """
        error = self.assertRaises(ValueError, knownGroups, "X25519:NO-SUCH-GROUP")
        self.assertIn("'NO-SUCH-GROUP'", str(error))
        self.assertRaises(ValueError, knownGroups, "X25519::P-256")
        self.assertRaises(ValueError, knownGroups, "?NO-SUCH-GROUP")
