# -*- test-case-name: chatd.test.test_admin_process -*-
"""
End-to-end: C{python -m chatd.admin} on the data directory of a running
C{twistd chatd}, for what only two real processes sharing one database show.
"""

import json
import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITransport
from twisted.protocols.basic import Int32StringReceiver

from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.processes import ScriptedClientTestCase, connectWhenListening, spawn

PASSWORD = "a good password"


class _Wire(Int32StringReceiver):
    """
    Sends requests and hands over their responses in order.
    """

    transport: ITransport

    def __init__(self):
        self.waiting = []

    def request(self, op, *values):
        answer: defer.Deferred = defer.Deferred()
        self.waiting.append((op, answer))
        self.transport.write(opcodes.request(op, *values))
        return answer

    def stringReceived(self, body):
        op, payload = opcodes.parseBody(body)
        if op == Op.RESPONSE and self.waiting:
            requested, answer = self.waiting.pop(0)
            answer.callback(opcodes.decodeResponse(requested, payload))


class AdminWhileServingTests(ScriptedClientTestCase):
    """
    The admin command changes what a running server lets in.
    """

    timeout = 120

    async def admin(self, *args, stdin=b""):
        """
        Run C{python -m chatd.admin} on the server's data directory.

        @return: what it printed, once it exited 0.
        """
        child = self.track(spawn(
            "chatd-admin", [sys.executable, "-m", "chatd.admin", "--data-dir",
                            os.path.join(self.workdir, "data"), "--json", *args],
            self.workdir, errorsApart=True))
        child.process.write(stdin)
        child.process.closeStdin()
        await child.ended
        self.assertEqual((child.status, child.errors), (0, b""), child.printed())
        return json.loads(child.output)

    async def login(self, server):
        wire = await connectWhenListening(
            TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), _Wire, server)
        self.addCleanup(wire.transport.loseConnection)
        await wire.request(Op.HELLO)
        return await wire.request(Op.LOGIN, "alice", PASSWORD)

    async def test_createUserThenBan(self):
        """
        An account made by chatd-admin while the server runs logs in at once;
        once banned, its login is refused with 0x05; the listing says so.
        """
        server = await self.startServer()
        self.assertEqual(await self.admin("create-user", "alice",
                                          stdin=PASSWORD.encode() + b"\n"),
                         {"created": "alice"})
        self.assertEqual(await self.login(server), (0, ()))
        await self.admin("ban", "alice")
        self.assertEqual(await self.login(server),
                         (5, ("this account is banned from this server",)))
        [user] = await self.admin("users")
        self.assertEqual((user["name"], user["banned"]), ("alice", True))
