"""
File transfers across the nodes of a cluster (L{chatd.core.remotefiles}):
alice on node A sends a file to bob on node B, in a room and directly, with
the window and timeouts of one node; on the fake Redis and a fake clock, and
the same scenarios through a real Redis when C{CHATD_TEST_REDIS} names one.
"""

import json
from typing import List, Tuple

from twisted.trial.unittest import TestCase

from chatd import e2e
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey, publicDer
from chatd.test.test_binary import NOTFOUND, OK
from chatd.test.test_fanout import FakeMode, RealMode, _Nodes, skip


class _Scenarios(_Nodes):
    """
    Transfers between alice on node A and bob on node B.
    """

    # Idle clients are not disconnected while the clock runs to a timeout.
    nodeSettings = dict(idleWarning=3600.0, idleTimeout=7200.0)

    async def pair(self, room=True):
        """
        Guests alice on node A and bob on node B, both in C{#r} when C{room}.
        """
        a, b = await self.node("A"), await self.node("B")
        alice, bob = await self.guest(a, "alice"), await self.guest(b, "bob")
        if room:
            await self.request(alice, Op.JOIN, "#r", "")
            await self.seesRoom(bob, "#r")
            await self.request(bob, Op.JOIN, "#r", "")
            await self.events(alice, Op.JOINED)
        else:
            await self.until(lambda: "bob" in self.service(a).directory.users)
        return alice, bob

    @staticmethod
    def service(factory):
        return factory.service

    def envelope(self, to, size, chunks, chunkSize):
        meta = json.dumps({"name": "report.pdf", "size": size, "sha256": "00" * 32,
                           "chunk_size": chunkSize, "chunks": chunks,
                           "file_key": "A" * 43 + "="}).encode()
        keys = {name: publicDer(name) for name in ("alice", "bob")}
        return e2e.seal("alice", privateKey("alice"), to, keys, meta, domain=e2e.FILE,
                        ts=int(self.clock.seconds() * 1000))

    async def offer(self, alice, bob, room=True, chunks=3, chunkSize=10):
        """
        alice offers a file of C{chunks} chunks to C{#r} or to bob, and bob is
        shown it.

        @return: C{(id at A, id at B)}
        """
        kind, target = (0, "#r") if room else (1, "bob")
        size = chunks * chunkSize
        blob = self.envelope(("room" if room else "user", target), size, chunks, chunkSize)
        status, (tid,) = await self.request(alice, Op.OFFER, kind, target, size, chunks,
                                            chunkSize, blob)
        self.assertEqual(status, OK)
        [(_, offered)] = await self.events(bob, Op.OFFERED)
        bobTid, sender, offeredKind, offeredTarget, offeredSize = offered[:5]
        self.assertEqual((sender, offeredKind, offeredTarget, offeredSize),
                         ("alice", kind, target, size))
        self.assertEqual(offered[5:7], (chunks, chunkSize))
        return tid, bobTid

    async def started(self, alice, bob, room=True, chunks=3):
        tid, bobTid = await self.offer(alice, bob, room, chunks)
        self.assertEqual((await self.request(bob, Op.ANSWER, bobTid, 1))[0], OK)
        [(_, (startedTid, accepted, window))] = await self.events(alice, Op.START)
        self.assertEqual((startedTid, accepted), (tid, 1))
        return tid, bobTid, window

    async def sendAll(self, alice, bob, room):
        """
        A whole transfer of 12 chunks, more than the window: bob receives
        every chunk exactly once, in the order sent, and both get DONE.
        """
        chunks = 12
        tid, bobTid, window = await self.started(alice, bob, room, chunks)
        limit, sent = window - 1, 0
        received: List[Tuple[int, bytes]] = []
        while sent < chunks:
            while sent <= limit:
                data = b"chunk %d" % (sent,)
                self.assertEqual((await self.request(alice, Op.CHUNK, tid, sent, data))[0], OK)
                sent += 1
            for _, (chunkTid, index, data) in await self.events(bob, Op.CHUNK,
                                                               sent - len(received)):
                self.assertEqual(chunkTid, bobTid)
                received.append((index, data))
                self.assertEqual((await self.request(bob, Op.ACK, bobTid, index))[0], OK)
            if sent < chunks:
                # One NEXT per acknowledgement that moved the limit: the last counts.
                _, (_, limit) = (await self.events(alice, Op.NEXT))[-1]
        self.assertEqual((await self.request(alice, Op.DONE, tid))[0], OK)
        await self.events(bob, Op.DONE)
        await self.events(alice, Op.DONE)
        await self.quiet()
        self.assertEqual(received, [(i, b"chunk %d" % (i,)) for i in range(chunks)])
        self.assertEqual(bob.takeEvents(Op.CHUNK), [])
        self.assertEqual(alice.takeEvents(Op.CANCEL) + bob.takeEvents(Op.CANCEL), [])

    async def test_roomFileAcrossNodes(self):
        """
        A file offered to a room reaches a member on another node, window by
        window, every chunk once.
        """
        alice, bob = await self.pair()
        await self.sendAll(alice, bob, room=True)

    async def test_directFileAcrossNodes(self):
        """
        A file offered to a user on another node reaches them, every chunk once.
        """
        alice, bob = await self.pair(room=False)
        await self.sendAll(alice, bob, room=False)

    async def test_senderCancelsAcrossNodes(self):
        """
        The sender's CANCEL reaches the recipient on another node with its reason.
        """
        alice, bob = await self.pair()
        tid, bobTid, _ = await self.started(alice, bob)
        self.assertEqual((await self.request(alice, Op.CANCEL, tid, "oops"))[0], OK)
        [(_, (cancelled, reason))] = await self.events(bob, Op.CANCEL)
        self.assertEqual((cancelled, reason), (bobTid, "cancelled by the sender: oops"))

    async def test_recipientCancelsAcrossNodes(self):
        """
        The last recipient cancelling on another node ends the transfer for
        the sender, as on one node.
        """
        alice, bob = await self.pair()
        tid, bobTid, _ = await self.started(alice, bob)
        self.assertEqual((await self.request(bob, Op.CANCEL, bobTid, ""))[0], OK)
        [(_, (cancelled, reason))] = await self.events(alice, Op.CANCEL)
        self.assertEqual((cancelled, reason), (tid, "no recipients left"))

    async def test_declineAcrossNodes(self):
        """
        A recipient on another node declining ends the offer for the sender.
        """
        alice, bob = await self.pair(room=False)
        tid, bobTid = await self.offer(alice, bob, room=False)
        self.assertEqual((await self.request(bob, Op.ANSWER, bobTid, 0))[0], OK)
        [(_, (cancelled, reason))] = await self.events(alice, Op.CANCEL)
        self.assertEqual((cancelled, reason), (tid, "no recipient accepted"))


class FakeRedisFileTests(_Scenarios, FakeMode, TestCase):
    """
    The scenarios on the fake Redis, and the timeouts, on its fake clock.
    """

    skip = skip

    async def test_chunkTimeoutAcrossNodes(self):
        """
        A recipient on another node that leaves a chunk unacknowledged for the
        chunk timeout is dropped, as on one node: it gets CANCEL
        C{chunk timeout}, and the sender, left alone, CANCEL C{no recipients left}.
        """
        alice, bob = await self.pair()
        tid, bobTid, _ = await self.started(alice, bob)
        self.assertEqual((await self.request(alice, Op.CHUNK, tid, 0, b"x"))[0], OK)
        await self.events(bob, Op.CHUNK)
        timeout = self.services[0].settings.chunkTimeout
        await self.advance(timeout - 1)
        self.assertEqual(bob.takeEvents(Op.CANCEL), [])
        await self.advance(2)
        self.assertEqual([values for _, values in bob.takeEvents(Op.CANCEL)],
                         [(bobTid, "chunk timeout")])
        self.assertEqual([values for _, values in alice.takeEvents(Op.CANCEL)],
                         [(tid, "no recipients left")])

    async def test_offerTimeoutAcrossNodes(self):
        """
        An offer a recipient on another node does not answer expires as on
        one node: it gets CANCEL C{offer expired}, the sender C{no recipient accepted}.
        """
        alice, bob = await self.pair()
        tid, bobTid = await self.offer(alice, bob)
        await self.advance(self.services[0].settings.offerTimeout + 1)
        self.assertEqual([values for _, values in bob.takeEvents(Op.CANCEL)],
                         [(bobTid, "offer expired")])
        self.assertEqual([values for _, values in alice.takeEvents(Op.CANCEL)],
                         [(tid, "no recipient accepted")])
        self.assertEqual((await self.request(bob, Op.ANSWER, bobTid, 1))[0], NOTFOUND)

    async def test_recipientNodeGone(self):
        """
        When the recipient's node dies, the sender's node drops it from the
        transfer once the node is declared gone, as if it had disconnected.
        """
        alice, bob = await self.pair()
        tid, _, _ = await self.started(alice, bob)
        self.kill(bob.protocol.factory)
        await self.advance(self.ttl + 2 * self.beat)
        self.assertEqual([values for _, values in alice.takeEvents(Op.CANCEL)],
                         [(tid, "no recipients left")])


class RealRedisFileTests(_Scenarios, RealMode, TestCase):
    """
    The scenarios through a real Redis (C{CHATD_TEST_REDIS}).
    """

    skip = skip
