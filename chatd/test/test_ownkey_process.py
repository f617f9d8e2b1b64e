"""
End-to-end: a lying server between a real C{python -m chatd.client} and a real
C{twistd chatd} (a proxy in the test that gives the client's own name another
key in the JOIN answer). The client warns loudly, refuses to send, and the
liar receives nothing it could open.
"""

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint

from chatd import e2e
from chatd.client.keystore import publicKeyDer
from chatd.test.fakes import privateKey
from chatd.test.lying import JOIN, Liar, LyingProxyFactory, readable
from chatd.test.processes import ScriptedClientTestCase, waitFor

ALICE = """\
/register alice
/join lobby
hello through a liar
/exit
"""


class LyingServerProcessTests(ScriptedClientTestCase):
    """
    A real client behind a lying proxy.
    """

    timeout = 120

    async def test_lyingJoinAnswer(self):
        """
        The proxy lists alice with mallory's key in her JOIN answer: her client
        prints the warning and "not sent", exits cleanly, and the proxy (the
        server, as far as the client can tell) never receives an envelope.
        """
        server = await self.startServer()
        mallory = publicKeyDer(privateKey("mallory"))
        liar = Liar("alice", mallory, {JOIN})
        proxy = reactor.listenTCP(0, LyingProxyFactory(
            TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), liar), interface="127.0.0.1")
        self.addCleanup(proxy.stopListening)

        address = proxy.getHost()
        assert isinstance(address, IPv4Address)
        alice = self.client(address.port, "alice", ALICE)
        await waitFor(lambda: alice.ended.called, 90, "alice's script to end", alice)

        self.assertEqual([blob for blob in liar.envelopes
                          if readable(blob, "alice", privateKey("mallory"))], [])
        self.assertCleanExits({"alice": alice})
        printed = alice.output.decode()
        self.assertEqual(liar.lies, 1)
        self.assertIn("!!! WARNING: THE SERVER GIVES ANOTHER KEY FOR YOU (alice) !!!", printed)
        self.assertIn("!!!   the server's key:  %s" % (e2e.fingerprint(mallory),), printed)
        self.assertIn("error: not sent: the server lists you with a key that is not this "
                      "device's", printed)
        self.assertEqual(liar.envelopes, [])
        await server.signal("TERM")
