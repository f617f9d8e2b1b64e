"""
Devices across the three doors on the real core: one account on a binary
version-3 session and a WebSocket session (added as a pending device and
approved by the binary one), another on the text door; each session receives
only its own device's entry of a room message, and a message that leaves a
device out is refused 0x09 naming every member's devices.
"""

import base64
import json

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd import e2e
from chatd.devicelist import DeviceList
from chatd.protocols import jsonwire
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService, privateKey, publicDer
from chatd.test.test_binary import OK
from chatd.test.test_devicedoors import WireV3
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket

PASSWORD = "correct horse"


def b64(data):
    return base64.b64encode(data).decode("ascii")


class CrossDoorDevicesTests(SynchronousTestCase):
    """
    alice on her phone (binary) and her browser (WebSocket), bob on his
    laptop (text).
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor)
        self.lists = {}

    def registerBinary(self, user, device):
        wire = WireV3(BinaryFactory(self.service))
        wire.hello()
        first = DeviceList.first(user, device, publicDer(user))
        self.assertEqual(wire.request(Op.REGISTER, user, PASSWORD, publicDer(user), device,
                                      first.text(), first.sign(privateKey(user)), b"R"),
                         (OK, ()))
        self.lists[user] = first
        return wire

    def registerText(self, user, device):
        client = LineClient(TextFactory(self.service))
        first = DeviceList.first(user, device, publicDer(user))
        request = {"userId": user, "publicKey": jsonwire.derToPem(publicDer(user)),
                   "password": PASSWORD, "device": device,
                   "list": {"text": b64(first.text()),
                            "signature": b64(first.sign(privateKey(user)))}}
        self.assertEqual(client.ok("CMD::/register-device " + json.dumps(request)),
                         {"type": "registered", "userId": user, "device": device,
                          "state": "approved"})
        self.lists[user] = first
        return client

    def addBrowser(self, phone):
        """
        alice's browser logs in (pending), asks to be approved; her phone
        sees it waiting and publishes the list that adds it.
        """
        browser = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        key = publicDer("alice/browser-1")
        self.assertEqual(browser.request("login", userId="alice", password=PASSWORD,
                                         device="browser-1",
                                         deviceKey=jsonwire.derToPem(key)),
                         {"type": "authenticated", "userId": "alice", "device": "browser-1",
                          "state": "pending"})
        self.assertEqual(browser.request("join", roomId="#r")["code"], "forbidden")
        self.assertEqual(browser.ok("request_device", tag=b64(b"T" * 32)),
                         {"type": "device_requested"})
        (_, (device, spki, tag, _)), = phone.takeEvents(DeviceOp.DEVICE_PENDING)
        self.assertEqual((device, spki, tag), ("browser-1", key, b"T" * 32))
        new = self.lists["alice"].following({"browser-1": key})
        devices = [("browser-1", key), ("phone", publicDer("alice"))]
        self.assertEqual(phone.request(DeviceOp.PUBLISH_DEVICES, new.text(),
                                       new.sign(privateKey("alice")), devices), (OK, ()))
        self.lists["alice"] = new
        return browser

    def envelope(self, readers):
        return e2e.seal("bob", privateKey("bob"), ("room", "#r"), readers, b"hi",
                        ts=1_700_000_000_000, device="laptop",
                        head=tuple(self.lists["bob"].head))

    def test_eachDeviceItsOwnEntry(self):
        """
        A room message from bob reaches alice's binary session with only the
        phone's entry and her WebSocket session with only the browser's.
        """
        phone = self.registerBinary("alice", "phone")
        laptop = self.registerText("bob", "laptop")
        self.assertEqual(phone.request(Op.JOIN, "#r", "")[0], OK)
        browser = self.addBrowser(phone)
        events = browser.take()
        self.assertEqual([m["type"] for m in events],
                         ["devices_changed", "user_joined", "caught_up"])
        self.assertEqual((events[1]["roomId"], events[1]["userId"], events[2]["count"]),
                         ("#r", "alice", 0))
        laptop.ok("CMD::/join #r")
        readers = {e2e.entryKey("alice", "phone"): publicDer("alice"),
                   e2e.entryKey("alice", "browser-1"): publicDer("alice/browser-1"),
                   e2e.entryKey("bob", "laptop"): publicDer("bob")}
        laptop.ok("MSG::" + self.envelope(readers).decode("utf-8"))
        (_, (room, sender, _, data)), = phone.takeEvents(Op.ROOM_MSG)
        self.assertEqual((room, sender, sorted(json.loads(data)["encrypted_keys"])),
                         ("#r", "bob", ["alice/phone"]))
        message, = [m for m in browser.take() if m["type"] == "chat_message"]
        self.assertEqual(sorted(message["envelope"]["encrypted_keys"]), ["alice/browser-1"])

    def test_fileOfferedEachDeviceItsOwnEntry(self):
        """
        A version 2 file offer from bob's binary laptop reaches alice's
        binary phone with only the phone's entry and her WebSocket browser
        with only the browser's.
        """
        phone = self.registerBinary("alice", "phone")
        laptop = self.registerBinary("bob", "laptop")
        for wire in (phone, laptop):
            self.assertEqual(wire.request(Op.JOIN, "#r", "")[0], OK)
        browser = self.addBrowser(phone)
        browser.take()
        phone.takeEvents()
        readers = {e2e.entryKey("alice", "phone"): publicDer("alice"),
                   e2e.entryKey("alice", "browser-1"): publicDer("alice/browser-1"),
                   e2e.entryKey("bob", "laptop"): publicDer("bob")}
        meta = json.dumps({"name": "a.txt", "size": 5, "sha256": "00" * 32, "chunk_size": 5,
                           "chunks": 1, "file_key": "A" * 43 + "="}).encode()
        blob = e2e.seal("bob", privateKey("bob"), ("room", "#r"), readers, meta,
                        domain=e2e.FILE, ts=1_700_000_000_000, device="laptop",
                        head=tuple(self.lists["bob"].head))
        self.assertEqual(laptop.request(Op.OFFER, 0, "#r", 5, 1, 5, blob)[0], OK)
        (_, offered), = phone.takeEvents(Op.OFFERED)
        self.assertEqual(sorted(json.loads(offered[-1])["encrypted_keys"]), ["alice/phone"])
        offer, = [m for m in browser.take() if m["type"] == "file_offered"]
        self.assertEqual(sorted(offer["envelope"]["encrypted_keys"]), ["alice/browser-1"])

    def test_staleNamesDevices(self):
        """
        A message that leaves out alice's browser is refused 09 on the text
        door, with every member's devices to re-encrypt for.
        """
        phone = self.registerBinary("alice", "phone")
        laptop = self.registerText("bob", "laptop")
        self.assertEqual(phone.request(Op.JOIN, "#r", "")[0], OK)
        self.addBrowser(phone)
        laptop.ok("CMD::/join #r")
        readers = {e2e.entryKey("alice", "phone"): publicDer("alice"),
                   e2e.entryKey("bob", "laptop"): publicDer("bob")}
        reply = laptop.request("MSG::" + self.envelope(readers).decode("utf-8"))
        self.assertTrue(reply.startswith(b"ERR::09::"), reply)
        members = json.loads(reply[9:])["members"]
        self.assertEqual({m["userId"]: sorted(d["id"] for d in m["devices"]["devices"])
                          for m in members},
                         {"alice": ["browser-1", "phone"], "bob": ["laptop"]})
        status, (devmembers,) = phone.request(Op.GET_KEYS, 0, "#r")
        self.assertEqual(status, OK)
        self.assertEqual([(name, sorted(d for d, _ in lst.devices))
                          for name, _, _, lst in devmembers],
                         [("alice", ["browser-1", "phone"]), ("bob", ["laptop"])])

    def test_waitingDirectMessage(self):
        """
        A DM from bob's text session to alice while she is offline is stored;
        her phone's binary login replays it, then CAUGHT_UP, and HISTORY
        @bob returns it.
        """
        phone = self.registerBinary("alice", "phone")
        phone.transport.loseConnection()
        phone.protocol.connectionLost(None)
        laptop = self.registerText("bob", "laptop")
        readers = {e2e.entryKey("alice", "phone"): publicDer("alice"),
                   e2e.entryKey("bob", "laptop"): publicDer("bob")}
        envelope = e2e.seal("bob", privateKey("bob"), ("user", "alice"), readers, b"later",
                            ts=1_700_000_000_000, device="laptop",
                            head=tuple(self.lists["bob"].head))
        self.assertEqual(laptop.ok("CMD::/pm alice " + envelope.decode("utf-8"))["type"],
                         "sent")
        phone = WireV3(BinaryFactory(self.service))
        phone.hello()
        self.assertEqual(phone.request(Op.LOGIN, "alice", PASSWORD, "phone", publicDer("alice")),
                         (OK, (0,)))
        events = phone.takeEvents()
        self.assertEqual([op for op, _ in events], [Op.DM, DeviceOp.CAUGHT_UP])
        (_, (sender, _, data)), (_, (count,)) = events
        self.assertEqual((sender, sorted(json.loads(data)["encrypted_keys"]), count),
                         ("bob", ["alice/phone"], 1))
        status, (rows,) = phone.request(Op.HISTORY, "@bob", 0, 0)
        self.assertEqual((status, [row[0] for row in rows]), (OK, ["bob"]))

    def test_historyForNewMembers(self):
        """
        alice's binary phone creates a room showing its last 5 messages and
        posts; bob's text laptop joins, alice is asked to share (SHARE_WANTED)
        and adds his entry (SHARE_HISTORY); bob's history then returns the
        message with his entry.
        """
        phone = self.registerBinary("alice", "phone")
        laptop = self.registerText("bob", "laptop")
        self.assertEqual(phone.request(Op.CREATE, "#h", "", 5), (OK, ()))
        status, (_, _, setting) = phone.request(Op.JOIN, "#h", "")
        self.assertEqual((status, setting), (OK, 5))
        envelope = e2e.seal("alice", privateKey("alice"), ("room", "#h"),
                            {e2e.entryKey("alice", "phone"): publicDer("alice")}, b"before",
                            ts=1_700_000_000_000, device="phone",
                            head=tuple(self.lists["alice"].head), hist=5)
        self.assertEqual(phone.request(Op.ROOM_MSG, "#h", envelope)[0], OK)
        self.assertEqual(laptop.ok("CMD::/join #h")["history"], 5)
        self.assertEqual(phone.takeEvents(DeviceOp.SHARE_WANTED),
                         [(DeviceOp.SHARE_WANTED, ("#h", "bob", 5))])
        # The server checks where an entry goes and its key id, not the
        # wrapped key (bob's client checks that): one from another envelope.
        wrapped = json.loads(e2e.seal(
            "alice", privateKey("alice"), ("room", "#h"),
            {e2e.entryKey("bob", "laptop"): publicDer("bob")}, b"x", device="phone",
            head=tuple(self.lists["alice"].head)))
        keys = json.dumps({name: wrapped[name] for name in ("encrypted_keys", "key_ids")})
        envelopeId = json.loads(envelope)["id"]
        self.assertEqual(phone.request(DeviceOp.SHARE_HISTORY, "#h", "bob",
                                       [(envelopeId, keys.encode("ascii"))]), (OK, (1,)))
        history = laptop.ok("CMD::/history #h")
        self.assertEqual([sorted(m["envelope"]["encrypted_keys"]) for m in history["messages"]],
                         [["bob/laptop"]])

    def test_webSocketJoinSetsHistory(self):
        """
        A WebSocket C{join} that creates a room gives it the C{history} it
        names (as does C{switch_room}); on an existing room C{history} is
        ignored; out of range (above 500) it is refused C{bad_request} and
        creates nothing.
        """
        phone = self.registerBinary("alice", "phone")
        laptop = self.registerText("bob", "laptop")
        browser = self.addBrowser(phone)
        browser.take()
        refused = browser.request("join", roomId="#w", history=501)
        self.assertEqual(refused["code"], "bad_request")
        self.assertNotIn("#w", self.service.directory.rooms)
        self.assertEqual(browser.ok("join", roomId="#w", history=7)["history"], 7)
        self.assertEqual(laptop.ok("CMD::/join #w")["history"], 7)
        self.assertEqual(laptop.ok("CMD::/join #z")["history"], 0)
        self.assertEqual(browser.ok("join", roomId="#z", history=9)["history"], 0)
        self.assertEqual(browser.ok("switch_room", roomId="#s", history=3)["history"], 3)
        self.assertEqual(laptop.ok("CMD::/join #s")["history"], 3)
