"""
Tests for L{chatd.core.sharing}: a room's history setting, SHARE_WANTED when
an account joins, and the rules SHARE_HISTORY is held to.
"""

import json

from chatd import e2e
from chatd.errors import BadRequest, Forbidden, StaleRecipients
from chatd.test.devicecase import DeviceCase, OnSQLite, deviceDer


class SharingTests(DeviceCase):
    """
    History for new members.
    """

    def setUp(self):
        DeviceCase.setUp(self)
        self.alice = self.register("alice")
        self.result(self.alice.create, "#r", "", 2)
        self.result(self.alice.join, "#r", "")
        self.ids = []
        for text in ("one", "two", "three"):
            blob = self.sealFrom("alice", "first", ("room", "#r"), self.readers("alice"), text,
                             hist=2)
            self.ids.append(e2e.Envelope.parse(blob).id)
            self.result(self.alice.roomMessage, "#r", blob)
            self.clock.advance(1)
        self.alice.client.take()
        self.bob = self.register("bob", "pc")

    def share(self, session, ids, entries=None, newcomer="bob"):
        entries = entries or {"bob/pc": deviceDer("bob", None)}
        maps = json.dumps({"encrypted_keys": {e: "d3JhcHBlZA==" for e in entries},
                           "key_ids": {e: e2e.keyId(k) for e, k in entries.items()}})
        return session.shareHistory("#r", newcomer, [(i, maps.encode()) for i in ids])

    def test_historySetting(self):
        """
        CREATE keeps the setting (0 to 500) and JOIN answers with it.
        """
        self.assertEqual(self.result(self.bob.join, "#r", "").history, 2)
        self.assertIsInstance(self.refusal(self.alice.create, "#x", "", 501), BadRequest)

    def test_shareWanted(self):
        """
        An account joining a room with a history setting makes a member's
        device session hear SHARE_WANTED.
        """
        self.result(self.bob.join, "#r", "")
        self.assertEqual(self.events(self.alice, "shareWanted"), [("#r", "bob", 2)])

    def test_share(self):
        """
        A member's share adds the newcomer's entries to the latest messages;
        the newcomer's HISTORY returns them; a second share of an entry is
        ignored.
        """
        self.result(self.bob.join, "#r", "")
        self.assertEqual(self.successResultOf(self.share(self.alice, self.ids[1:])), 2)
        self.assertEqual(self.successResultOf(self.share(self.alice, self.ids[2:])), 0)
        rows = self.result(self.bob.history, "#r", 0, 0)
        self.assertEqual([json.loads(env)["encrypted_keys"] for _, _, env in rows],
                         [{"bob/pc": "d3JhcHBlZA=="}] * 2)

    def test_nonMember(self):
        """
        Only a member shares, and only with a member.
        """
        self.assertIsInstance(self.refusal(self.share, self.bob, self.ids[2:],
                                           None, "alice"), Forbidden)
        self.assertIsInstance(self.failureResultOf(self.share(self.alice, self.ids[2:]))
                              .value, Forbidden)

    def test_tooOld(self):
        """
        A message beyond the room's latest N is refused.
        """
        self.result(self.bob.join, "#r", "")
        self.assertIsInstance(self.failureResultOf(self.share(self.alice, self.ids[:1]))
                              .value, BadRequest)

    def test_wrongKeyId(self):
        """
        An entry for the newcomer's device under another key is refused 0x09;
        an entry for a device it does not have, 0x01.
        """
        self.result(self.bob.join, "#r", "")
        self.assertIsInstance(self.failureResultOf(self.share(
            self.alice, self.ids[2:], {"bob/pc": deviceDer("bob", "x")})).value,
            StaleRecipients)
        self.assertIsInstance(self.failureResultOf(self.share(
            self.alice, self.ids[2:], {"bob/ghost": deviceDer("bob", "x")})).value,
            BadRequest)

    def test_entryAlreadyThere(self):
        """
        An entry the message has already (the sender's own) is ignored.
        """
        self.assertEqual(self.successResultOf(self.share(
            self.alice, self.ids[2:], {"alice/first": deviceDer("alice", None)},
            "alice")), 0)


class SQLiteSharingTests(OnSQLite, SharingTests):
    """
    History for new members, on SQLite.
    """
