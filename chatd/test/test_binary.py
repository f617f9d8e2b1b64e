"""
Tests for L{chatd.protocols.binary}: byte-exact exchanges over StringTransport.
"""

import json
from typing import Any, Dict

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e, loginsig
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.test.fakes import makeService, privateKey, publicDer, testKeys

OK, ERR, RATE, AUTHREQ, FORBIDDEN, NOTFOUND, CONFLICT, TOOLARGE, STALE = 0, 1, 2, 4, 5, 6, 7, 8, 9


class Wire:
    """
    One client connection to a L{BinaryProtocol} over a L{StringTransport}.

    @ivar name: the user's name, for tests that keep it with the connection.
    """

    name: str

    def __init__(self, factory, host="10.0.0.1"):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        self.protocol.makeConnection(self.transport)
        self.events = []
        # The protocol version said in HELLO, by which frames are decoded.
        self.version = 1

    def send(self, op, *values):
        self.sendRaw(opcodes.request(op, *values))

    def sendRaw(self, data):
        self.protocol.dataReceived(data)

    def frames(self):
        """
        Every frame written since the last call, as C{(op, payload)}.
        """
        data = self.transport.value()
        self.transport.clear()
        frames = []
        while data:
            n = int.from_bytes(data[:4], "big")
            body, data = data[4:4 + n], data[4 + n:]
            frames.append(opcodes.parseBody(body))
        return frames

    def responses(self, op):
        """
        The responses written since the last call, decoded as answers to C{op};
        events are kept in C{self.events}.
        """
        out = []
        for fop, payload in self.frames():
            if fop == Op.RESPONSE:
                out.append(opcodes.decodeResponse(op, payload, version=self.version))
            else:
                self.events.append((fop, opcodes.decodeEvent(fop, payload,
                                                             version=self.version)))
        return out

    def request(self, op, *values):
        """
        Send one request and return its single response C{(status, values)}.
        """
        self.send(op, *values)
        responses = self.responses(op)
        assert len(responses) == 1, responses
        return responses[0]

    def takeEvents(self, op=None):
        self.responses(None) if self.transport.value() else None
        events = [e for e in self.events if op is None or e[0] == op]
        self.events = [e for e in self.events if e not in events]
        return events

    def hello(self, version=None):
        status, (name,) = self.request(Op.HELLO, *([] if version is None else [version]))
        assert status == OK
        self.version = version or 1
        return name


class ProtocolTestCase(SynchronousTestCase):
    """
    Common set-up: a core on an in-memory store and a binary factory.
    """

    settings: Dict[str, Any] = {}

    def setUp(self):
        self.service = makeService(**self.settings)
        self.clock = self.service.clock
        self.factory = BinaryFactory(self.service)

    def connect(self, host="10.0.0.1"):
        return Wire(self.factory, host)

    def guest(self, name, host="10.0.0.1"):
        """
        A greeted guest named C{name} with its key published.
        """
        wire = self.connect(host)
        wire.hello()
        assert wire.request(Op.NICK, name)[0] == OK
        assert wire.request(Op.SET_KEY, publicDer(name))[0] == OK
        wire.name = name
        return wire

    def account(self, name, password="correct horse"):
        wire = self.connect()
        wire.hello()
        status, _ = wire.request(Op.REGISTER, name, password, publicDer(name))
        assert status == OK, status
        wire.name = name
        return wire

    def room(self, room, *wires):
        members: Any = None
        for wire in wires:
            status, (members,) = wire.request(Op.JOIN, room, "")
            assert status == OK, status
        for wire in wires:
            wire.takeEvents()
        return dict(members)

    def idle(self, wire, seconds):
        """
        Let C{seconds} pass, with heartbeats so that the connection stays.
        """
        for _ in range(int(seconds)):
            self.clock.advance(1)
            wire.send(Op.HEARTBEAT, "x")

    def seal(self, sender, to, recipients, text, **kw):
        return e2e.seal(sender, privateKey(sender), to, recipients, text.encode(),
                        ts=int(self.clock.seconds() * 1000), **kw)


class SessionRulesTests(ProtocolTestCase):
    """
    HELLO, HEARTBEAT and the framing rules.
    """

    def test_helloAssignsGuestNames(self):
        """
        Each HELLO gets the next free guest name, C{rand0}, C{rand1}, ...
        """
        self.assertEqual([self.connect().hello(), self.connect().hello()], ["rand0", "rand1"])

    def test_requestBeforeHello(self):
        """
        A request before HELLO gets 0x04 with a message; HELLO then works.
        """
        wire = self.connect()
        status, (message,) = wire.request(Op.LIST_ROOMS)
        self.assertEqual(status, AUTHREQ)
        self.assertTrue(message)
        self.assertEqual(wire.hello(), "rand0")

    def test_helloRules(self):
        """
        A wrong greeting gets 0x01, an unknown version 0x01 naming versions 1,
        2 and 3, a second HELLO 0x07.
        """
        wire = self.connect()
        wire.sendRaw(opcodes.frame(Op.HELLO, opcodes.GREETING[:-1] + b"!"))
        self.assertEqual(wire.responses(Op.HELLO)[0][0], ERR)
        wire.sendRaw(opcodes.frame(Op.HELLO, opcodes.encodeHello(4)))
        status, (message,) = wire.responses(Op.HELLO)[0]
        self.assertEqual(status, ERR)
        self.assertIn("1, 2, 3", message)
        self.assertEqual(wire.request(Op.HELLO, 1), (OK, ("rand0",)))
        self.assertEqual(wire.request(Op.HELLO)[0], CONFLICT)

    def test_heartbeatNeverAnswered(self):
        """
        HEARTBEAT gets no response, before HELLO, after it, or malformed.
        """
        wire = self.connect()
        wire.send(Op.HEARTBEAT, "stayin alive...")
        wire.hello()
        wire.send(Op.HEARTBEAT, "stayin alive...")
        wire.sendRaw(opcodes.frame(Op.HEARTBEAT, b"\x20ab"))
        self.assertEqual(wire.frames(), [])

    def test_malformedFramesKeepConnection(self):
        """
        Truncated, over-long and badly encoded payloads, a bare magic and an
        unknown opcode each get 0x01 with a message, and the connection stays.
        """
        wire = self.connect()
        wire.hello()
        for body in [opcodes.MAGIC + bytes([Op.JOIN]) + b"\x20ab",
                     opcodes.MAGIC + bytes([Op.JOIN]) + b"\x01r\x00extra",
                     opcodes.MAGIC + bytes([Op.LIST_USERS]) + b"\x02\xff\xfe",
                     opcodes.MAGIC + bytes([Op.NICK]) + b"\x05abc",
                     opcodes.MAGIC,
                     opcodes.MAGIC + b"\x7e" + b"xyz"]:
            wire.sendRaw(len(body).to_bytes(4, "big") + body)
            [(status, (message,))] = wire.responses(Op.JOIN)
            self.assertEqual(status, ERR, body)
            self.assertTrue(message)
        self.assertFalse(wire.transport.disconnecting)
        self.assertEqual(wire.request(Op.LIST_ROOMS), (OK, ([],)))

    def test_badMagicCloses(self):
        """
        A body without the magic, or too short to hold it, gets 0x01 and closes.
        """
        for body in [b"\x00\x00\x09", b"", b"\x04"]:
            wire = self.connect()
            wire.sendRaw(len(body).to_bytes(4, "big") + body)
            self.assertEqual(wire.responses(None)[0][0], ERR)
            self.assertTrue(wire.transport.disconnecting)

    def test_oversizeFrameCloses(self):
        """
        A length above the limit gets 0x08 and the connection closes without
        waiting for the announced bytes.
        """
        wire = self.connect()
        wire.hello()
        wire.sendRaw((0x7FFFFFF0).to_bytes(4, "big") + opcodes.MAGIC + b"\x15" + b"x" * 100)
        self.assertEqual(wire.responses(None)[0][0], TOOLARGE)
        self.assertTrue(wire.transport.disconnecting)

    def test_oversizeFrameAfterClosing(self):
        """
        More over-long length prefixes after the connection closed on the first
        get nothing more and do not let go of the transport twice (found by
        fuzzing: the second raised from dataReceived).
        """
        wire = self.connect()
        wire.sendRaw(b"\xff\xff\xff\xff")
        wire.sendRaw(b"\xff\xff\xff\xff")
        wire.sendRaw((0x7FFFFFF0).to_bytes(4, "big"))
        self.assertEqual([status for status, _ in wire.responses(None)], [TOOLARGE])
        self.assertTrue(wire.transport.disconnecting)

    def test_framesSplitAcrossReads(self):
        """
        A request that arrives a byte at a time is answered once, when whole.
        """
        wire = self.connect()
        for byte in opcodes.request(Op.HELLO):
            wire.sendRaw(bytes([byte]))
        self.assertEqual(wire.responses(Op.HELLO), [(OK, ("rand0",))])

    def test_idleWarningThenDisconnect(self):
        """
        Twenty seconds without a byte bring WARNING 0x03; thirty close the
        connection; any byte in between starts the count again.
        """
        wire = self.connect()
        wire.hello()
        self.clock.advance(19)
        wire.send(Op.HEARTBEAT, "stayin alive...")
        self.clock.advance(19)
        self.assertEqual(wire.frames(), [])
        self.clock.advance(1)
        [(op, payload)] = wire.frames()
        self.assertEqual(op, Op.WARNING)
        self.assertEqual(opcodes.decodeEvent(op, payload)[0], 0x03)
        self.clock.advance(9)
        self.assertFalse(wire.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(wire.transport.disconnecting)


class ChatTests(ProtocolTestCase):
    """
    Rooms, messages and their envelope rules through the binary protocol.
    """

    def test_twoUsersInARoom(self):
        """
        The second joiner gets both keys, the first a JOINED event; a message is
        acknowledged with a timestamp and delivered cut to the reader.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.assertEqual(alice.request(Op.JOIN, "#r", ""), (OK, ([("alice", publicDer("alice"))],)))
        status, (members,) = bob.request(Op.JOIN, "#r", "")
        self.assertEqual(dict(members), {"alice": publicDer("alice"), "bob": publicDer("bob")})
        self.assertEqual(alice.takeEvents(), [(Op.JOINED, ("#r", "bob", publicDer("bob")))])
        blob = self.seal("alice", ("room", "#r"), dict(members), "hello")
        status, (ts,) = alice.request(Op.ROOM_MSG, "#r", blob)
        self.assertEqual(status, OK)
        [(op, (room, sender, evts, envelope))] = bob.takeEvents()
        self.assertEqual((op, room, sender, evts), (Op.ROOM_MSG, "#r", "alice", ts))
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"hello")
        self.assertEqual(set(json.loads(envelope)["encrypted_keys"]), {"bob"})
        self.assertEqual(alice.takeEvents(), [])

    def test_threeUsersEachGetTheirOwnEntry(self):
        """
        In a room of three, both readers get the message, each with only its own
        key entry, and each can open it.
        """
        wires = [self.guest(n) for n in ("alice", "bob", "carol")]
        members = self.room("#three", *wires)
        blob = self.seal("alice", ("room", "#three"), members, "to all")
        self.assertEqual(wires[0].request(Op.ROOM_MSG, "#three", blob)[0], OK)
        for wire in wires[1:]:
            [(_, (_, _, _, envelope))] = wire.takeEvents(Op.ROOM_MSG)
            self.assertEqual(set(json.loads(envelope)["key_ids"]), {wire.name})
            self.assertEqual(e2e.openEnvelope(envelope, wire.name, privateKey(wire.name),
                                              publicDer("alice")), b"to all")

    def test_staleRecipientsRetry(self):
        """
        An envelope missing a member gets 0x09 with the current members and keys;
        re-sealed to them it is accepted.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        stale = self.seal("alice", ("room", "#r"), {"alice": publicDer("alice")}, "only me")
        status, (listed,) = alice.request(Op.ROOM_MSG, "#r", stale)
        self.assertEqual((status, dict(listed)), (STALE, members))
        self.assertEqual(bob.takeEvents(), [])
        fresh = self.seal("alice", ("room", "#r"), dict(listed), "both")
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", fresh)[0], OK)
        self.assertEqual(len(bob.takeEvents(Op.ROOM_MSG)), 1)

    def test_forgedSenderAndBadSignature(self):
        """
        An envelope claiming another sender, or signed by another key, gets 0x05
        and is not delivered.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        forged = e2e.seal("bob", privateKey("alice"), ("room", "#r"), members, b"x",
                          ts=int(self.clock.seconds() * 1000))
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", forged)[0], FORBIDDEN)
        badsig = e2e.seal("alice", privateKey("bob"), ("room", "#r"), members, b"x",
                          ts=int(self.clock.seconds() * 1000))
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", badsig)[0], FORBIDDEN)
        self.assertEqual(bob.takeEvents(), [])

    def test_envelopeRulesInOrder(self):
        """
        A wrong target is 0x01, a timestamp over five minutes off 0x01, a replay
        0x07, and a non-member 0x01.
        """
        alice, bob, carol = self.guest("alice"), self.guest("bob"), self.guest("carol")
        members = self.room("#r", alice, bob)
        elsewhere = self.seal("alice", ("room", "#other"), members, "x")
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", elsewhere)[0], ERR)
        old = e2e.seal("alice", privateKey("alice"), ("room", "#r"), members, b"x",
                       ts=int(self.clock.seconds() * 1000) - 301_000)
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", old)[0], ERR)
        good = self.seal("alice", ("room", "#r"), members, "once")
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", good)[0], OK)
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", good)[0], CONFLICT)
        self.assertEqual(len(bob.takeEvents(Op.ROOM_MSG)), 1)
        outsider = self.seal("carol", ("room", "#r"), members, "x")
        self.assertEqual(carol.request(Op.ROOM_MSG, "#r", outsider)[0], ERR)
        self.assertEqual(carol.request(Op.ROOM_MSG, "#nowhere", outsider)[0], NOTFOUND)

    def test_directMessage(self):
        """
        A DM reaches the online recipient cut to its entry; to an unknown user it
        gets 0x06.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        blob = self.seal("alice", ("user", "bob"), keys, "psst")
        status, (ts,) = alice.request(Op.DM, "bob", blob)
        self.assertEqual(status, OK)
        [(op, (sender, evts, envelope))] = bob.takeEvents()
        self.assertEqual((op, sender, evts), (Op.DM, "alice", ts))
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"psst")
        self.assertEqual(alice.request(Op.DM, "nobody", blob)[0], NOTFOUND)

    def test_rateLimit(self):
        """
        The sixth message within five seconds gets 0x02 and is not delivered;
        five seconds later messages pass again.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        statuses = [alice.request(Op.ROOM_MSG, "#r", self.seal("alice", ("room", "#r"),
                                                                 members, "m"))[0]
                    for _ in range(7)]
        self.assertEqual(statuses, [OK] * 5 + [RATE] * 2)
        self.assertEqual(len(bob.takeEvents(Op.ROOM_MSG)), 5)
        self.clock.advance(5)
        blob = self.seal("alice", ("room", "#r"), members, "later")
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", blob)[0], OK)

    def test_staleRecipientsDoNotCount(self):
        """
        A message refused only because the members changed (0x09) does not use up
        the sender's rate limit; one refused for its envelope does.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        stale = {"alice": publicDer("alice")}
        for _ in range(5):
            blob = self.seal("alice", ("room", "#r"), stale, "x")
            self.assertEqual(alice.request(Op.ROOM_MSG, "#r", blob)[0], STALE)
        self.assertEqual(alice.request(Op.ROOM_MSG, "#r", b"not an envelope")[0], ERR)
        statuses = [alice.request(Op.ROOM_MSG, "#r", self.seal("alice", ("room", "#r"),
                                                                 members, "m"))[0]
                    for _ in range(5)]
        self.assertEqual(statuses, [OK] * 4 + [RATE])

    def test_history(self):
        """
        HISTORY returns the stored messages oldest first, cut to the reader.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        for text in ("one", "two"):
            alice.request(Op.ROOM_MSG, "#r", self.seal("alice", ("room", "#r"), members, text))
            self.clock.advance(1)
        status, (rows,) = bob.request(Op.HISTORY, "#r", 0, 0)
        self.assertEqual(status, OK)
        self.assertEqual([e2e.openEnvelope(env, "bob", privateKey("bob"), publicDer("alice"))
                          for _, _, env in rows], [b"one", b"two"])
        self.assertEqual([set(json.loads(env)["encrypted_keys"]) for _, _, env in rows],
                         [{"bob"}, {"bob"}])
        status, (older,) = bob.request(Op.HISTORY, "#r", 0, rows[1][1])
        self.assertEqual([r[1] for r in older], [rows[0][1]])

    def test_historyFitsTheFrameLimit(self):
        """
        HISTORY keeps the newest rows that fit in one frame.
        """
        rows = [("a", i, b"x" * 400) for i in range(10)]
        kept = self.factory.buildProtocol(None)._fitHistory(rows, 2000)
        self.assertEqual([r[1] for r in kept], [6, 7, 8, 9])


class GuestAndAccountTests(ProtocolTestCase):
    """
    Guests, accounts, names and keys.
    """

    def test_guestNeedsKeyToJoin(self):
        """
        A guest without a published key gets 0x01 on JOIN; after SET_KEY it joins.
        """
        wire = self.connect()
        wire.hello()
        self.assertEqual(wire.request(Op.JOIN, "#r", "")[0], ERR)
        self.assertEqual(wire.request(Op.SET_KEY, publicDer("g"))[0], OK)
        self.assertEqual(wire.request(Op.JOIN, "#r", "")[0], OK)

    def test_nickRules(self):
        """
        Guests may take a free valid name; a name in use or of the reserved guest
        form gets 0x07; a bad name 0x01; accounts cannot NICK (0x05).
        """
        a, b = self.connect(), self.connect()
        a.hello(), b.hello()
        self.assertEqual(a.request(Op.NICK, "ann"), (OK, ("ann",)))
        self.assertEqual(b.request(Op.NICK, "ANN")[0], CONFLICT)
        self.assertEqual(b.request(Op.NICK, "rand7")[0], CONFLICT)
        self.assertEqual(b.request(Op.NICK, "bad name!")[0], ERR)
        self.assertEqual(a.request(Op.NICK, "ann"), (OK, ("ann",)))
        account = self.account("zed")
        self.assertEqual(account.request(Op.NICK, "zed2")[0], FORBIDDEN)
        self.assertEqual(b.request(Op.NICK, "Zed")[0], CONFLICT)

    def test_registerLoginAndConflicts(self):
        """
        REGISTER logs in; a taken name gets 0x07; a wrong password 0x05; LOGIN
        while logged in 0x07; a 1024-bit key is refused.
        """
        self.account("alice", "password1")
        other = self.connect()
        other.hello()
        self.assertEqual(other.request(Op.REGISTER, "Alice", "password2", publicDer("x"))[0],
                         CONFLICT)
        self.assertEqual(other.request(Op.LOGIN, "alice", "wrong-pass")[0], FORBIDDEN)
        self.assertEqual(other.request(Op.LOGIN, "nobody", "wrong-pass")[0], FORBIDDEN)
        self.assertEqual(other.request(Op.LOGIN, "alice", "password1")[0], OK)
        self.assertEqual(other.request(Op.LOGIN, "alice", "password1")[0], CONFLICT)
        weak = self.connect()
        weak.hello()
        self.assertEqual(weak.request(Op.REGISTER, "weak", "password1", publicDer("w", 1024))[0],
                         ERR)

    def test_accountLeaveDropsEmptiedRoom(self):
        """
        An account leaving the room only it was in removes the room, as a guest
        leaving does.
        """
        alice = self.account("alice")
        self.assertEqual(alice.request(Op.JOIN, "#solo", "")[0], OK)
        self.assertEqual(alice.request(Op.LEAVE, "#solo")[0], OK)
        self.assertEqual(alice.request(Op.LIST_ROOMS), (OK, ([],)))

    def test_overlongPasswordIsWrong(self):
        """
        A LOGIN password over bcrypt's 72 bytes is a wrong password (0x05), not
        an error.
        """
        self.account("alice", "password1")
        wire = self.connect()
        wire.hello()
        self.assertEqual(wire.request(Op.LOGIN, "alice", "x" * 100)[0], FORBIDDEN)
        self.assertEqual(wire.request(Op.LOGIN, "nobody", "x" * 100)[0], FORBIDDEN)

    def test_unknownUserAndWrongPasswordAlike(self):
        """
        An unknown user and a wrong password get the same status and message.
        """
        self.account("alice", "password1")
        wire = self.connect()
        wire.hello()
        self.assertEqual(wire.request(Op.LOGIN, "alice", "nope-nope"),
                         wire.request(Op.LOGIN, "nobody", "nope-nope"))

    def test_challengeResponse(self):
        """
        AUTH with a signature over the outstanding challenge logs in; the
        challenge is single use, and expires after 60 s.
        """
        self.account("alice").transport.loseConnection()
        wire = self.connect()
        wire.hello()
        _, (challenge,) = wire.request(Op.CHALLENGE)
        self.assertEqual(len(challenge), 32)
        self.assertEqual(wire.request(Op.AUTH, "alice", b"x" * 256)[0], FORBIDDEN)
        _, (challenge,) = wire.request(Op.CHALLENGE)
        sig = loginsig.signAuth(privateKey("alice"), challenge, "alice")
        self.assertEqual(wire.request(Op.AUTH, "alice", sig)[0], OK)
        again = self.connect()
        again.hello()
        again.request(Op.CHALLENGE)
        self.assertEqual(again.request(Op.AUTH, "alice", sig)[0], FORBIDDEN)
        _, (challenge,) = again.request(Op.CHALLENGE)
        self.idle(again, 61)
        sig = loginsig.signAuth(privateKey("alice"), challenge, "alice")
        self.assertEqual(again.request(Op.AUTH, "alice", sig)[0], FORBIDDEN)

    def test_failedLoginsRateLimited(self):
        """
        After five failures for one account, even the right password gets 0x02.
        """
        self.account("alice", "password1")
        wire = self.connect()
        wire.hello()
        for _ in range(5):
            self.assertEqual(wire.request(Op.LOGIN, "alice", "wrong-pass")[0], FORBIDDEN)
        self.assertEqual(wire.request(Op.LOGIN, "alice", "password1")[0], RATE)
        self.assertEqual(wire.request(Op.LOGIN, "ghost", "password1")[0], FORBIDDEN)
        self.idle(wire, 61)
        self.assertEqual(wire.request(Op.LOGIN, "alice", "password1")[0], OK)

    def test_leaveEverythingCloses(self):
        """
        LEAVE '' leaves every room and keeps the connection; in no room, it is
        answered and the connection closes.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.room("#a", alice, bob)
        self.room("#b", alice, bob)
        self.assertEqual(bob.request(Op.LEAVE, "")[0], OK)
        self.assertEqual(sorted(alice.takeEvents(Op.LEFT)),
                         [(Op.LEFT, ("#a", "bob")), (Op.LEFT, ("#b", "bob"))])
        self.assertFalse(bob.transport.disconnecting)
        self.assertEqual(bob.request(Op.LEAVE, "#a")[0], ERR)
        self.assertEqual(bob.request(Op.LEAVE, "")[0], OK)
        self.assertTrue(bob.transport.disconnecting)

    def test_disconnectLeavesRooms(self):
        """
        A member whose connection drops is LEFT from its rooms.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        self.room("#a", alice, bob)
        bob.protocol.connectionLost(None)
        self.assertEqual(alice.takeEvents(), [(Op.LEFT, ("#a", "bob"))])

    def test_noGuests(self):
        """
        With guests disallowed, a greeted guest gets 0x04 for everything but
        logging in.
        """
        self.service.settings = self.service.settings.__class__(allowGuests=False, bcryptCost=4)
        self.account("alice", "password1").transport.loseConnection()
        wire = self.connect()
        wire.hello()
        self.assertEqual(wire.request(Op.LIST_ROOMS)[0], AUTHREQ)
        self.assertEqual(wire.request(Op.LOGIN, "alice", "password1")[0], OK)
        self.assertEqual(wire.request(Op.LIST_ROOMS)[0], OK)


class OrderingAndBackpressureTests(ProtocolTestCase):
    """
    Responses in request order, and slow readers.
    """

    def test_responsesInRequestOrder(self):
        """
        A request behind a slow one is answered after it, even though it could
        have been answered at once.
        """
        pending = []

        def slow(f, *args):
            d: Deferred = Deferred()
            pending.append((d, f, args))
            return d
        self.account("alice", "password1").transport.loseConnection()
        self.service.credentials._run = slow
        wire = self.connect()
        wire.hello()
        wire.send(Op.LOGIN, "alice", "password1")
        wire.send(Op.LIST_ROOMS)
        self.assertEqual(wire.frames(), [])
        [(d, f, args)] = pending
        d.callback(f(*args))
        self.assertEqual([(op, payload[:1]) for op, payload in wire.frames()],
                         [(Op.RESPONSE, b"\x00"), (Op.RESPONSE, b"\x00")])

    def test_slowReaderAborted(self):
        """
        A connection whose transport stays paused is aborted once more than the
        send queue is waiting, and its rooms hear it left.
        """
        self.service.settings = self.service.settings.__class__(sendQueue=10_000, bcryptCost=4)
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        bob.protocol.outbox.pauseProducing()
        sent = 0
        while not bob.transport.disconnecting and sent < 40:
            self.clock.advance(1)
            blob = self.seal("alice", ("room", "#r"), members, "x" * 200)
            alice.request(Op.ROOM_MSG, "#r", blob)
            sent += 1
        self.assertTrue(bob.transport.disconnecting)
        self.assertLess(sent, 40)


class _HeldStore(MemoryStore):
    """
    A store whose appends wait until the test lets them through.
    """

    def __init__(self, keys):
        MemoryStore.__init__(self, keys)
        self.held = []

    def appendMessage(self, *args):
        d: Deferred = Deferred()
        self.held.append((d, args))
        return d

    def release(self):
        held, self.held = self.held, []
        for d, args in held:
            MemoryStore.appendMessage(self, *args).chainDeferred(d)


class OverlappingMessagesTests(ProtocolTestCase):
    """
    Messages on one connection overlap while their store writes wait; every
    other request waits for the messages before it.
    """

    def setUp(self):
        self.service = makeService(store=_HeldStore(testKeys()), rateLimit=(1000, 1.0))
        self.clock = self.service.clock
        self.factory = BinaryFactory(self.service)

    def test_messagesOverlapAndAnswerInOrder(self):
        """
        Three messages sent back to back all reach the store before any is
        answered; their answers come in request order; a HISTORY behind them is
        only handled once they are stored, and sees them.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        blobs = [self.seal("alice", ("room", "#r"), members, "m%d" % i) for i in range(3)]
        for blob in blobs:
            alice.send(Op.ROOM_MSG, "#r", blob)
        alice.send(Op.HISTORY, "#r", 0, 0)
        self.assertEqual((len(self.service.store.held), alice.frames()), (3, []))
        self.service.store.release()
        frames = alice.frames()
        stamps = [opcodes.decodeResponse(Op.ROOM_MSG, payload)[1][0]
                  for _, payload in frames[:3]]
        self.assertEqual(stamps, sorted(stamps))
        [(_, payload)] = frames[3:]
        self.assertEqual(len(opcodes.decodeResponse(Op.HISTORY, payload)[1][0]), 3)

    def test_tooManyOverlappingPause(self):
        """
        A connection with the most messages waiting stops reading until one is
        answered.
        """
        alice, bob = self.guest("alice"), self.guest("bob")
        members = self.room("#r", alice, bob)
        for i in range(70):
            alice.send(Op.ROOM_MSG, "#r", self.seal("alice", ("room", "#r"), members, "%d" % i))
        self.assertEqual(len(self.service.store.held), 64)
        self.assertTrue(alice.protocol.paused)
        self.service.store.release()
        self.service.store.release()
        statuses = [opcodes.decodeResponse(Op.ROOM_MSG, p)[0] for _, p in alice.frames()]
        self.assertEqual(statuses, [OK] * 70)
        self.assertFalse(alice.protocol.paused)
