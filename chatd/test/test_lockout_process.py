"""
End-to-end: a real C{twistd chatd} sees real source addresses (127.0.0.x), so
failures from one address refuse only that address, and the owner logs in
from another.
"""

import os

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ITransport
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import TestCase

from chatd import loginsig
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.processes import connectWhenListening, freePort, spawnChatd

OK, RATE, FORBIDDEN = 0, 2, 5


class _Client(Int32StringReceiver):
    """
    One request at a time: each answered by the next RESPONSE frame (events
    are skipped).
    """

    transport: ITransport

    def __init__(self):
        self._waiting = None

    def request(self, op, *values):
        self._waiting = (op, defer.Deferred())
        self.transport.write(opcodes.request(op, *values))
        return self._waiting[1]

    def stringReceived(self, body):
        op, payload = opcodes.parseBody(body)
        if op == Op.RESPONSE and self._waiting is not None:
            (asked, d), self._waiting = self._waiting, None
            d.callback(opcodes.decodeResponse(asked, payload))


class LockOutTests(TestCase):
    """
    Garbage AUTH frames from one address, against a real server.
    """

    timeout = 60

    async def test_garbageAuthFromOneAddress(self):
        """
        Five garbage AUTH frames from 127.0.0.2 get 0x05 and a sixth 0x02, and
        the account's owner then logs in from 127.0.0.3 with a valid signature.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        port = freePort()
        child = spawnChatd("twistd", workdir, "--data-dir", os.path.join(workdir, "data"),
                           "--binary", "tcp:%d:interface=127.0.0.1" % (port,),
                           "--text", "none", "--web", "none", "--bcrypt-cost", "4")
        self.addCleanup(child.signal, "TERM")

        async def connect(source):
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
            client = await connectWhenListening(endpoint, _Client, child)
            self.addCleanup(client.transport.loseConnection)
            self.assertEqual((await client.request(Op.HELLO))[0], OK)
            return client

        owner = await connect("127.0.0.3")
        self.assertEqual((await owner.request(Op.REGISTER, "alice", "", publicDer("alice")))[0],
                         OK)
        owner.transport.loseConnection()

        attacker = await connect("127.0.0.2")
        statuses = []
        for _ in range(6):
            await attacker.request(Op.CHALLENGE)
            statuses.append((await attacker.request(Op.AUTH, "alice", b"x" * 256))[0])
        self.assertEqual(statuses, [FORBIDDEN] * 5 + [RATE])

        owner = await connect("127.0.0.3")
        _, (challenge,) = await owner.request(Op.CHALLENGE)
        signature = loginsig.signAuth(privateKey("alice"), challenge, "alice")
        self.assertEqual((await owner.request(Op.AUTH, "alice", signature))[0], OK)
