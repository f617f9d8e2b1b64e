"""
Tests for L{chatd.core.waiting}: the recipients of version 2 envelopes per
device, each device given only its entry, direct messages that wait, the
catch-up after login and the marks behind it.
"""

import json

from chatd import e2e
from chatd.core.devicebook import MARK_INTERVAL
from chatd.errors import Forbidden, NotFound, StaleRecipients
from chatd.test.devicecase import DeviceCase, OnSQLite, deviceDer, deviceKey
from chatd.test.fakes import privateKey, publicDer


class RecipientsTests(DeviceCase):
    """
    The exact-recipients rule (0x09) per device.
    """

    def setUp(self):
        DeviceCase.setUp(self)
        self.alice = self.register("alice")
        self.phone = self.addDevice(self.alice, "alice", "phone")
        self.bob = self.register("bob")
        for session in (self.alice, self.bob):
            self.result(session.join, "#r", "")
        for session in (self.alice, self.phone, self.bob):
            session.client.take()

    def test_exact(self):
        """
        An envelope wrapped for every device of every member (the sender's
        other devices included) is taken.
        """
        blob = self.sealFrom("alice", "first", ("room", "#r"), self.readers("alice", "bob"))
        self.assertIsInstance(self.result(self.alice.roomMessage, "#r", blob), int)

    def test_missingDevice(self):
        """
        A device left out is refused 0x09 with the members.
        """
        readers = self.readers("alice", "bob")
        del readers["alice/phone"]
        e = self.refusal(self.alice.roomMessage, "#r",
                         self.sealFrom("alice", "first", ("room", "#r"), readers))
        self.assertIsInstance(e, StaleRecipients)
        self.assertEqual([name for name, _ in e.members], ["alice", "bob"])

    def test_extraDevice(self):
        """
        A device nobody listed is refused 0x09.
        """
        readers = dict(self.readers("alice", "bob"), **{"bob/ghost": deviceDer("bob", "g")})
        self.assertIsInstance(self.refusal(
            self.alice.roomMessage, "#r", self.sealFrom("alice", "first", ("room", "#r"), readers)),
            StaleRecipients)

    def test_wrongKeyId(self):
        """
        An entry wrapped for another key than its device's is refused 0x09.
        """
        readers = dict(self.readers("alice", "bob"), **{"bob/first": deviceDer("bob", "x")})
        self.assertIsInstance(self.refusal(
            self.alice.roomMessage, "#r", self.sealFrom("alice", "first", ("room", "#r"), readers)),
            StaleRecipients)

    def test_offlineMembersIncluded(self):
        """
        Accounts remembered in the room but offline are members too: their
        devices must be named.
        """
        self.bob.closed()
        readers = self.readers("alice")
        self.assertIsInstance(self.refusal(
            self.alice.roomMessage, "#r", self.sealFrom("alice", "first", ("room", "#r"), readers)),
            StaleRecipients)
        self.result(self.alice.roomMessage, "#r", self.sealFrom(
            "alice", "first", ("room", "#r"), self.readers("alice", "bob")))

    def test_bannedOfflineMemberDropped(self):
        """
        An offline account banned from the room is no longer a recipient:
        its devices must not be named any more.
        """
        self.bob.closed()
        self.result(self.alice.roomMessage, "#r", self.sealFrom(
            "alice", "first", ("room", "#r"), self.readers("alice", "bob")))
        self.result(self.alice.ban, "#r", "bob", "")
        self.result(self.alice.roomMessage, "#r", self.sealFrom(
            "alice", "first", ("room", "#r"), self.readers("alice")))

    def test_answersNameRecipients(self):
        """
        A device session's JOIN and GET_KEYS answer with every member a
        version 2 envelope must name (offline accounts remembered in the room
        included), their lists held for the door; a legacy session's, with
        those online, as in version 2.
        """
        self.bob.closed()
        carol = self.register("carol")
        self.assertEqual([name for name, _ in self.result(carol.join, "#r", "")],
                         ["alice", "bob", "carol"])
        self.assertEqual([name for name, _ in self.result(carol.getKeys, 0, "#r")],
                         ["alice", "bob", "carol"])
        self.assertEqual(carol.devicesOf("bob").devices, (("first", deviceDer("bob", None)),))
        dave = self.account("dave")
        self.assertEqual([name for name, _ in self.result(dave.join, "#r", "")],
                         ["alice", "carol", "dave"])

    def test_signedByThisDevice(self):
        """
        An envelope naming another device than the session's is refused 0x05.
        """
        blob = self.sealFrom("alice", "first", ("room", "#r"), self.readers("alice", "bob"))
        self.assertIsInstance(self.refusal(self.phone.roomMessage, "#r", blob), Forbidden)

    def test_eachDeviceItsEntry(self):
        """
        Every session is given the envelope cut to its own entry key.
        """
        blob = self.sealFrom("alice", "first", ("room", "#r"), self.readers("alice", "bob"))
        self.result(self.alice.roomMessage, "#r", blob)
        for session, entry in [(self.phone, "alice/phone"), (self.bob, "bob/first")]:
            [(room, sender, _, cut)] = self.events(session, "roomMessage")
            self.assertEqual(set(json.loads(bytes(cut))["encrypted_keys"]), {entry})
            self.assertEqual(e2e.openEnvelope(bytes(cut), entry, deviceKey(
                *entry.split("/")) if entry == "alice/phone" else deviceKey("bob", None),
                deviceDer("alice", None)), b"hi")


class WaitingDirectTests(DeviceCase):
    """
    Direct messages to accounts are stored and wait for their devices.
    """

    def dm(self, sender, device, peer, text):
        readers = self.readers(sender, peer)
        return self.result(getattr(self, "s_" + sender).directMessage, peer, self.sealFrom(
            sender, device, ("user", peer), readers, text))

    def test_offlineStoredAndCaughtUp(self):
        """
        A direct message to an account with nobody online is stored; its
        device gets it at its next login, in order, once.
        """
        self.s_alice = self.register("alice")
        bob = self.register("bob", "pc")
        bob.closed()
        self.dm("alice", "first", "bob", "one")
        self.dm("alice", "first", "bob", "two")
        again = self.loginDevice("bob", "pc")
        events = again.client.take()
        texts = [e2e.openEnvelope(bytes(args[2]), "bob/pc", deviceKey("bob", None),
                                  deviceDer("alice", None)) for name, args in events
                 if name == "directMessage"]
        self.assertEqual(texts, [b"one", b"two"])
        self.assertEqual(events[-1], ("caughtUp", (2,)))
        again.closed()
        self.clock.advance(MARK_INTERVAL)
        third = self.loginDevice("bob", "pc")
        self.assertEqual([name for name, _ in third.client.take()], ["caughtUp"])

    def test_newDeviceStartsNow(self):
        """
        A device seen for the first time has nothing to replay.
        """
        self.s_alice = self.register("alice")
        self.register("bob").closed()
        self.dm("alice", "first", "bob", "old")
        bob = self.register("carol")
        self.assertEqual(self.result(bob.getRecovery), b"recovery")
        phone = self.addDevice(self.s_alice, "alice", "phone")
        self.assertEqual(self.events(phone, "directMessage"), [])

    def test_historyOfConversation(self):
        """
        HISTORY @user returns the stored direct messages, cut to the device.
        """
        self.s_alice = self.register("alice")
        self.s_bob = self.register("bob")
        self.dm("alice", "first", "bob", "hello")
        self.dm("bob", "first", "alice", "back")
        rows = self.result(self.s_bob.history, "@alice", 0, 0)
        self.assertEqual([sender for sender, _, _ in rows], ["alice", "bob"])
        self.assertEqual(set(json.loads(rows[0][2])["encrypted_keys"]), {"bob/first"})

    def test_legacyUnchanged(self):
        """
        A legacy session's direct message to someone offline is still refused
        0x06, and not stored.
        """
        alice = self.account("alice")
        self.register("bob").closed()
        e = self.refusal(alice.directMessage, "bob", b"{}")
        self.assertIsInstance(e, NotFound)


class CatchUpTests(DeviceCase):
    """
    A device catches up on its rooms, and its mark is not written per delivery.
    """

    def test_roomCatchUp(self):
        """
        Messages of a room posted while a member was offline are replayed at
        its next login, after its rooms are restored.
        """
        alice = self.register("alice")
        bob = self.register("bob", "pc")
        self.result(alice.join, "#r", "")
        self.result(bob.join, "#r", "")
        bob.closed()
        self.clock.advance(MARK_INTERVAL)
        for text in ("a", "b"):
            self.result(alice.roomMessage, "#r", self.sealFrom(
                "alice", "first", ("room", "#r"), self.readers("alice", "bob"), text))
        again = self.loginDevice("bob", "pc")
        names = [name for name, _ in again.client.take()]
        self.assertEqual(names, ["userJoined", "roomMessage", "roomMessage", "caughtUp"])

    def test_marksNotPerDelivery(self):
        """
        Deliveries raise the mark in memory; the store is written once per
        interval, and when the session closes.
        """
        alice = self.register("alice")
        bob = self.register("bob")
        self.result(alice.join, "#r", "")
        self.result(bob.join, "#r", "")
        self.clock.advance(MARK_INTERVAL)
        writes = []
        setMarks = self.store.setMarks

        def counted(marks):
            writes.append(marks)
            return setMarks(marks)
        self.patch(self.store, "setMarks", counted)
        for text in "abc":
            self.result(alice.roomMessage, "#r", self.sealFrom(
                "alice", "first", ("room", "#r"), self.readers("alice", "bob"), text))
        self.assertEqual(writes, [])
        self.clock.advance(MARK_INTERVAL)
        self.assertEqual(len(writes), 1)
        self.assertEqual(sorted(device for _, device, _ in writes[0]), ["first", "first"])
        self.result(alice.roomMessage, "#r", self.sealFrom(
            "alice", "first", ("room", "#r"), self.readers("alice", "bob"), "d"))
        bob.closed()
        self.assertEqual(len(writes), 2)


class LegacySenderTests(DeviceCase):
    """
    A version-1 envelope (a legacy sender's, keyed by bare names) reaches
    every device session of a member by the bare name, live, in history and
    in catch-up; only the identity device can open it.
    """

    def setUp(self):
        DeviceCase.setUp(self)
        self.alice = self.register("alice")
        self.phone = self.addDevice(self.alice, "alice", "phone")
        self.carol = self.account("carol")
        for session in (self.alice, self.carol):
            self.result(session.join, "#r", "")
        for session in (self.alice, self.phone, self.carol):
            session.client.take()

    def fromCarol(self, to, readers, text="old school"):
        return e2e.seal("carol", privateKey("carol"), to, readers, text.encode("utf-8"),
                        ts=int(self.clock.seconds() * 1000))

    def roomBlob(self, text="old school"):
        return self.fromCarol(("room", "#r"), {"alice": publicDer("alice"),
                                               "carol": publicDer("carol")}, text)

    def assertOpens(self, cut, text="old school"):
        """
        C{cut} is keyed by the bare name alone, and the identity key opens it.
        """
        self.assertEqual(set(json.loads(bytes(cut))["encrypted_keys"]), {"alice"})
        self.assertEqual(e2e.openEnvelope(bytes(cut), "alice", privateKey("alice"),
                                          publicDer("carol")), text.encode("utf-8"))

    def test_live(self):
        """
        Both of alice's devices get carol's room message, cut to "alice".
        """
        self.result(self.carol.roomMessage, "#r", self.roomBlob())
        for session in (self.alice, self.phone):
            [(room, sender, _, cut)] = self.events(session, "roomMessage")
            self.assertEqual((room, sender), ("#r", "carol"))
            self.assertOpens(cut)

    def test_liveDirect(self):
        """
        A legacy direct message reaches every device of the recipient.
        """
        self.result(self.carol.directMessage, "alice", self.fromCarol(
            ("user", "alice"), {"alice": publicDer("alice"), "carol": publicDer("carol")}))
        for session in (self.alice, self.phone):
            [(sender, _, cut)] = self.events(session, "directMessage")
            self.assertEqual(sender, "carol")
            self.assertOpens(cut)

    def test_history(self):
        """
        A device session's HISTORY returns carol's messages beside the
        version 2 ones, each cut by the entry it is read by.
        """
        self.result(self.carol.roomMessage, "#r", self.roomBlob())
        self.result(self.alice.roomMessage, "#r", self.sealFrom(
            "alice", "first", ("room", "#r"),
            dict(self.readers("alice"), carol=publicDer("carol")), "new"))
        for session, entry in [(self.alice, "alice/first"), (self.phone, "alice/phone")]:
            rows = self.result(session.history, "#r", 0, 0)
            self.assertEqual([sender for sender, _, _ in rows], ["carol", "alice"])
            self.assertOpens(rows[0][2])
            self.assertEqual(set(json.loads(rows[1][2])["encrypted_keys"]), {entry})

    def test_catchUp(self):
        """
        A device that was offline gets carol's message in its catch-up.
        """
        self.phone.closed()
        self.clock.advance(MARK_INTERVAL)
        self.result(self.carol.roomMessage, "#r", self.roomBlob("while away"))
        again = self.loginDevice("alice", "phone")
        [(room, sender, _, cut)] = self.events(again, "roomMessage")
        self.assertOpens(cut, "while away")


class SQLiteRecipientsTests(OnSQLite, RecipientsTests):
    """
    The recipients per device, on SQLite.
    """


class SQLiteWaitingDirectTests(OnSQLite, WaitingDirectTests):
    """
    Direct messages that wait, on SQLite.
    """


class SQLiteCatchUpTests(OnSQLite, CatchUpTests):
    """
    Catch-up, on SQLite.
    """


class SQLiteLegacySenderTests(OnSQLite, LegacySenderTests):
    """
    Version-1 envelopes to device sessions, on SQLite.
    """
