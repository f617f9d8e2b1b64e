"""
Tests for the terminal client's pending lines: what is typed while the client
is not connected is queued, shown as pending, sent in order once connected
again, and marked sent or not sent; a real client and server core in memory.
"""

import time

from twisted.internet.defer import maybeDeferred
from twisted.internet.testing import StringTransport

from chatd.client.chat import ChatClient
from chatd.client.console import Console
from chatd.test.test_client import PASSWORD, ClientTestCase, MemoryEndpoint, TestHome, seedIdentity
from chatd.test.test_console import ConsoleTestCase


class PendingAcrossReconnectTests(ClientTestCase):
    """
    A console on a terminal, its client connected to the core in memory.
    """

    def setUp(self):
        ClientTestCase.setUp(self)
        self.endpoint = MemoryEndpoint(self, self.factory)
        home = TestHome(self.mktemp())
        seedIdentity(home, "alice")

        def makeClient(ui):
            return ChatClient(home, ui, self.endpoint, self.clock, runInThread=maybeDeferred,
                              retryPolicy=lambda attempt: 1.0)
        self.console = Console(makeClient, self.clock, interactive=True, localtime=time.gmtime)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        self.alice = self.console.client
        self.alice.start()
        self.flush()
        self.addCleanup(self.stop, self.alice)
        self.do(self.alice.register("alice", PASSWORD))
        self.do(self.alice.join("lobby"))
        self.bob, self.bobUI = self.account("bob", "lobby")

    def type(self, line):
        self.console.dataReceived(line.encode("utf-8") + b"\n")
        self.flush()

    def screen(self):
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data

    def test_sentInOrderAfterReconnecting(self):
        """
        Lines typed while the server cannot be reached are shown as pending,
        and are sent in the order typed once the client is back.
        """
        self.endpoint.refusing = True
        self.endpoint.drop()
        self.flush()
        self.screen()
        self.type("one")
        self.type("/pm bob two")
        self.type("three")
        self.advance(5)
        screen = self.screen()
        self.assertIn("pending until connected: one", screen)
        self.assertIn("pending until connected: /pm bob two", screen)
        self.assertIn("(3 pending) #lobby> ", screen)
        self.assertEqual([event for event in self.bobUI.take() if event[0] != "left"], [])
        self.endpoint.refusing = False
        self.advance(2)
        said = [event[-1] for event in self.bobUI.take()
                if event[0] in ("message", "dm")]
        self.assertEqual(said, ["one", "two", "three"])
        screen = self.screen()
        self.assertIn("#lobby <alice> one", screen)
        self.assertIn("*dm to bob* <alice> two", screen)
        self.assertLess(screen.index("<alice> one"), screen.index("<alice> three"))
        self.assertTrue(screen.endswith("\r\x1b[K#lobby> "), screen[-40:])

    def test_notSentWhenStopped(self):
        """
        A pending line that never gets a connection is marked as not sent.
        """
        self.endpoint.refusing = True
        self.endpoint.drop()
        self.flush()
        self.type("lost words")
        self.screen()
        self.stop(self.alice)
        self.assertIn("error: not sent: lost words (the client has stopped)", self.screen())


class PendingConsoleTests(ConsoleTestCase):
    """
    Pending lines are for a person at a terminal.
    """

    def test_pipedLinesNotPending(self):
        """
        Piped, a line typed while disconnected is run as always, not held.
        """
        console = self.console()
        console.client.connected = False
        self.type(console, "hello")
        self.assertEqual(console.client.calls, [("send", "hello")])

    def test_commandsNotPending(self):
        """
        Only messages wait for the connection: other commands run as before.
        """
        console = self.console(interactive=True)
        console.client.connected = False
        self.type(console, "/rooms", "hi")
        self.assertEqual(console.client.calls, [("listRooms",)])
        console.client.connected = True
        console.client.connection.callback(None)
        self.assertEqual(console.client.calls, [("listRooms",), ("send", "hi")])
