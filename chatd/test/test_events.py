"""
Tests for L{chatd.core.events} (the typed events and their wire form) and for
L{chatd.core.directory.Directory}, the one owner of users, rooms and
memberships, which reports every change as events.
"""

from typing import Any, Dict, List, Tuple, cast

from twisted.trial.unittest import SynchronousTestCase

from chatd.core.directory import Directory
from chatd.core.events import (
    KINDS,
    Approval,
    DevicePending,
    DevicesChanged,
    DirectMessage,
    Event,
    FileAck,
    FileAnswer,
    FileCancelled,
    FileChunk,
    FileDone,
    FileLeave,
    FileOffer,
    Joined,
    KeyChanged,
    Kicked,
    Left,
    PasswordChanged,
    Renamed,
    RoleChanged,
    RoomCreated,
    RoomDestroyed,
    RoomDropped,
    RoomMessage,
    ShareWanted,
    TopicChanged,
    Unbanned,
    UnknownEvent,
    UserOffline,
    UserOnline,
    fromWire,
)
from chatd.core.online import User
from chatd.e2e import Envelope
from chatd.test.fakes import publicDer

# One event of each kind, with the wire form nodes have always exchanged.
WIRE: List[Tuple[Event, Dict[str, Any]]] = [
    (UserOnline("alice", b"k", True), {"t": "online", "user": "alice", "key": b"k",
                                       "account": True}),
    (UserOffline("alice"), {"t": "offline", "user": "alice"}),
    (Renamed("rand1", "bob", False), {"t": "renamed", "old": "rand1", "new": "bob",
                                      "account": False}),
    (KeyChanged("alice", b"k2"), {"t": "key", "user": "alice", "key": b"k2"}),
    (RoomCreated("#r", None), {"t": "room", "room": "#r", "password": None, "history": 0}),
    (DevicesChanged("alice", b"list", b"sig", (("laptop", b"k"),), None),
     {"t": "devices", "user": "alice", "text": b"list", "signature": b"sig",
      "devices": (("laptop", b"k"),), "key": None}),
    (DevicePending("alice", "phone", b"k", b"tag", 7),
     {"t": "pending", "user": "alice", "device": "phone", "key": b"k", "tag": b"tag",
      "expires": 7}),
    (Approval("alice", "phone", b"reply"),
     {"t": "approval", "user": "alice", "device": "phone", "reply": b"reply"}),
    (ShareWanted("#r", "bob", 5, ("alice",)),
     {"t": "share-wanted", "room": "#r", "newcomer": "bob", "history": 5,
      "members": ("alice",)}),
    (RoomDropped("#r"), {"t": "unroom", "room": "#r"}),
    (Joined("#r", "alice"), {"t": "joined", "room": "#r", "user": "alice"}),
    (Left("#r", "alice"), {"t": "left", "room": "#r", "user": "alice"}),
    (RoomMessage("#r", "alice", 5, b"env"), {"t": "message", "room": "#r", "sender": "alice",
                                             "ts": 5, "envelope": b"env", "seq": 0}),
    (DirectMessage("alice", "bob", 6, b"env", sequence=3),
     {"t": "direct", "sender": "alice", "peer": "bob", "ts": 6, "envelope": b"env",
      "seq": 3}),
    (Kicked("#r", "bob", "alice", "spam", True), {"t": "kicked", "room": "#r", "user": "bob",
                                                  "by": "alice", "reason": "spam",
                                                  "banned": True}),
    (Unbanned("#r", "bob"), {"t": "unbanned", "room": "#r", "user": "bob"}),
    (RoleChanged("#r", "bob", "alice", None), {"t": "role", "room": "#r", "user": "bob",
                                               "by": "alice", "role": None}),
    (TopicChanged("#r", "alice", "hi"), {"t": "topic", "room": "#r", "by": "alice",
                                         "topic": "hi"}),
    (PasswordChanged("#r", b"h"), {"t": "password", "room": "#r", "password": b"h"}),
    (RoomDestroyed("#r", "alice"), {"t": "destroyed", "room": "#r", "by": "alice"}),
    (FileOffer("n2", 7, "bob", "alice", 0, "#r", 10, 1, 10, b"env"),
     {"t": "file-offer", "node": "n2", "id": 7, "user": "bob", "sender": "alice",
      "targetKind": 0, "target": "#r", "size": 10, "chunks": 1, "chunkSize": 10,
      "envelope": b"env"}),
    (FileChunk("n2", 7, "bob", 0, b"d"), {"t": "file-chunk", "node": "n2", "id": 7,
                                          "user": "bob", "index": 0, "data": b"d"}),
    (FileDone("n2", 7, "bob"), {"t": "file-done", "node": "n2", "id": 7, "user": "bob"}),
    (FileCancelled("n2", 7, "bob", "why"), {"t": "file-cancelled", "node": "n2", "id": 7,
                                            "user": "bob", "reason": "why"}),
    (FileAnswer("n1", 7, "bob", True), {"t": "file-answer", "node": "n1", "id": 7,
                                        "user": "bob", "accept": True}),
    (FileAck("n1", 7, "bob", 0), {"t": "file-ack", "node": "n1", "id": 7, "user": "bob",
                                  "index": 0}),
    (FileLeave("n1", 7, "bob", "gone", False), {"t": "file-leave", "node": "n1", "id": 7,
                                                "user": "bob", "reason": "gone",
                                                "cancel": False}),
]


class Session:
    """
    A session as the directory sees one: something a user holds.
    """

    transfers = ()


class WireTests(SynchronousTestCase):
    """
    Each event has one wire form, the one nodes exchange through Redis.
    """

    def test_everyKind(self):
        """
        Every kind of event is written as its known wire form and read back
        as an equal event.
        """
        self.assertEqual(sorted(KINDS), sorted(wire["t"] for _, wire in WIRE))
        for event, wire in WIRE:
            self.assertEqual(event.toWire(), wire)
            self.assertEqual(fromWire(wire), event)

    def test_localPartNotSent(self):
        """
        The envelope a node parsed already stays on that node: it is neither on
        the wire nor part of the event's equality.
        """
        parsed = cast(Envelope, object())
        event = RoomMessage("#r", "alice", 5, b"env", parsed)
        self.assertNotIn("opened", event.toWire())
        self.assertEqual(event, RoomMessage("#r", "alice", 5, b"env"))
        self.assertIs(event.parsed(), parsed)

    def test_unknownFieldsIgnored(self):
        """
        A field a newer node adds is ignored.
        """
        self.assertEqual(fromWire({"t": "offline", "user": "a", "device": 3}),
                         UserOffline("a"))

    def test_unknownKind(self):
        """
        An unknown kind, or a missing field, is refused with its reason.
        """
        e = self.assertRaises(UnknownEvent, fromWire, {"t": "nonsense"})
        self.assertIn("nonsense", str(e))
        e = self.assertRaises(UnknownEvent, fromWire, {"user": "a"})
        self.assertIn("unknown kind", str(e))
        e = self.assertRaises(UnknownEvent, fromWire, {"t": "joined", "room": "#r"})
        self.assertIn("'user'", str(e))

    def test_fieldsAddedSinceDefault(self):
        """
        A field added since the version before (a room's history setting, a
        message's sequence) may be missing from an older node's event: it
        takes its default.
        """
        self.assertEqual(fromWire({"t": "room", "room": "#r", "password": None}),
                         RoomCreated("#r", None, 0))
        self.assertEqual(fromWire({"t": "message", "room": "#r", "sender": "a", "ts": 5,
                                   "envelope": b"e"}), RoomMessage("#r", "a", 5, b"e", sequence=0))


class DirectoryTests(SynchronousTestCase):
    """
    The directory changes users, rooms and memberships, and says what changed.
    """

    def setUp(self):
        self.directory = Directory()
        self.session = Session()
        self.alice = User("alice", publicDer("alice"), account=True)

    def test_attachDetach(self):
        """
        A user's first session here brings it online here; its last one
        takes it offline here.
        """
        other = Session()
        self.assertEqual(self.directory.attach(self.session, self.alice),
                         [UserOnline("alice", publicDer("alice"), True)])
        self.assertEqual(self.directory.attach(other, self.alice), [])
        self.assertIs(self.directory.user("ALICE"), self.alice)
        self.assertEqual(self.directory.detach(other, self.alice), [])
        self.assertEqual(self.directory.detach(self.session, self.alice),
                         [UserOffline("alice")])

    def test_membership(self):
        """
        Joining and leaving change both sides of the membership, and are
        reported.
        """
        self.directory.attach(self.session, self.alice)
        self.assertEqual(self.directory.createRoom("#R", None), [RoomCreated("#R", None)])
        self.assertEqual(self.directory.createRoom("#r", None), [])
        room = self.directory.room("#r")
        self.assertEqual(self.directory.join(room, self.alice), [Joined("#R", "alice")])
        self.assertEqual(room.keyIds(), {"alice": self.alice.keyId})
        self.assertEqual(self.directory.leave(room, self.alice), [Left("#R", "alice")])
        self.assertEqual((room.members, self.alice.rooms), ({}, {}))
        self.assertEqual(self.directory.dropRoom(room), [RoomDropped("#R")])
        self.assertEqual(self.directory.dropRoom(room), [])

    def test_roomSessions(self):
        """
        A room's sessions, kept between messages, follow its members' sessions
        coming and going and its members joining and leaving.
        """
        other, bobSession = Session(), Session()
        bob = User("bob")
        self.directory.createRoom("#r", None)
        room = self.directory.room("#r")
        self.directory.attach(self.session, self.alice)
        self.directory.join(room, self.alice)
        self.assertEqual(room.sessions(), (self.session,))
        self.assertIs(room.sessions(), room.sessions())
        self.directory.attach(other, self.alice)
        self.assertEqual(room.sessions(), (self.session, other))
        self.directory.attach(bobSession, bob)
        self.directory.join(room, bob)
        self.assertEqual(room.sessions(), (self.session, other, bobSession))
        self.directory.detach(self.session, self.alice)
        self.assertEqual(room.sessions(), (other, bobSession))
        self.directory.leave(room, bob)
        self.assertEqual(room.sessions(), (other,))
        self.assertEqual(self.directory.roomSessions(room, exclude=other), [])

    def test_rename(self):
        """
        A rename moves the user under its new name, in the directory and in
        its rooms.
        """
        guest = User("rand1")
        self.directory.attach(self.session, guest)
        self.directory.createRoom("#r", None)
        room = self.directory.room("#r")
        self.directory.join(room, guest)
        self.assertEqual(self.directory.rename(guest, "bob", False),
                         [Renamed("rand1", "bob", False)])
        self.assertIsNone(self.directory.user("rand1"))
        self.assertIs(self.directory.user("bob"), guest)
        self.assertEqual(list(room.members), ["bob"])

    def test_remoteChangesLikeLocal(self):
        """
        An event from another node makes the change the same event makes
        here, once: a repeat changes nothing and reports nothing.
        """
        events = [UserOnline("bob", publicDer("bob"), False), RoomCreated("#r", None),
                  Joined("#r", "bob")]
        for event in events:
            self.assertEqual(self.directory.apply("n2", event), [event])
        for event in events[1:]:
            self.assertEqual(self.directory.apply("n2", event), [])
        bob = self.directory.user("bob")
        assert bob is not None
        self.assertEqual((bob.nodes, list(bob.rooms)), ({"n2"}, ["#r"]))
        self.assertEqual(self.directory.apply("n2", RoomDropped("#r")), [])
        self.assertEqual(self.directory.apply("n2", KeyChanged("bob", publicDer("bob"))), [])
        self.assertEqual(self.directory.apply("n2", Left("#r", "bob")), [Left("#r", "bob")])
        self.assertEqual(self.directory.apply("n2", RoomDropped("#r")), [RoomDropped("#r")])
        self.assertEqual(self.directory.apply("n2", UserOffline("bob")), [UserOffline("bob")])
        self.assertEqual(bob.nodes, set())

    def test_remoteAboutUnknown(self):
        """
        An event about a user or room this node does not know changes nothing.
        """
        for event in [UserOffline("x"), Renamed("x", "y", False), KeyChanged("x", b"k"),
                      Joined("#r", "x"), Left("#r", "x"), RoomMessage("#r", "x", 1, b""),
                      DirectMessage("x", "y", 1, b"")]:
            self.assertEqual(self.directory.apply("n2", event), [], event)
        self.assertEqual((self.directory.users, self.directory.rooms), ({}, {}))
