"""
Devices (protocol version 3) on the three doors: each door turns its requests
into the core's device requests with the right arguments, lays out their
answers, refusals and events as docs/protocol.rst says, and shows nothing new
to a legacy session (L{chatd.protocols.devicedoor},
L{chatd.protocols.jsondevicedoor}).

The core's device requests are stood in for by recorders (the doors' part is
what they send and how they encode the answer); everything else is the real
core on an in-memory store.
"""

import base64
import json
from typing import Any, Dict, List, Tuple

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd.core.session import Session
from chatd.devicelist import Head, HeadConflict
from chatd.errors import StaleRecipients
from chatd.model import DeviceList, PendingDevice
from chatd.protocols import devicewire, jsonwire
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.devicewire import DeviceOp
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.test.fakes import makeService, publicDer
from chatd.test.test_binary import OK, Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket

CONFLICT, STALE = 0x07, 0x09
ALICE_LIST = DeviceList(b"chatd-devices-v1\0alice\n1\n\n", b"SIG",
                        (("phone", publicDer("alice")),), 1, "ab" * 32)
# ALICE_LIST as a client decodes it.
WIRE_LIST = devicewire.DeviceList(ALICE_LIST.text, ALICE_LIST.signature, ALICE_LIST.devices)
PENDING = PendingDevice("tablet", publicDer("tablet"), b"T" * 32, 1_700_000_600_000)


def b64(data):
    return base64.b64encode(data).decode("ascii")


class WireV3(Wire):
    """
    A binary client that says protocol version 3 and decodes by it.
    """

    def hello(self, version=3):
        self.send(Op.HELLO, version)
        self.version = version
        (status, _), = self.responses(Op.HELLO)
        assert status == OK, status

    def send(self, op, *values):
        if self.version >= 3:
            self.sendRaw(devicewire.request(op, *values))
        else:
            Wire.send(self, op, *values)

    def responses(self, op):
        if self.version < 3:
            return Wire.responses(self, op)
        out = []
        for fop, payload in self.frames():
            if fop == Op.RESPONSE:
                out.append(devicewire.decodeResponse(op, payload))
            else:
                self.events.append((fop, devicewire.decodeEvent(fop, payload)))
        return out


class DeviceDoorsTestCase(SynchronousTestCase):
    """
    One core, its three doors, and recorders standing in for the core's
    device requests: C{self.calls} lists C{(method, args)}; a recorded login
    logs in with the password and makes the session a device session (its
    door in C{self.doors}, by device).
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor)
        self.binary = BinaryFactory(self.service)
        self.calls: List[Tuple[str, tuple]] = []
        self.answers: Dict[str, object] = {}
        for method in ("getDevices", "requestDevice", "publishDevices", "approve",
                       "getRecovery", "setRecovery", "shareHistory", "resetIdentity",
                       "authDevice"):
            self.patch(Session, method, self._recorder(method))
        lists = {"alice": ALICE_LIST}
        self.patch(Session, "devicesOf",
                   lambda session, name: lists.get(name, devicewire.NO_LIST))
        calls = self.calls
        self.doors: Dict[str, Any] = {}

        def loginDevice(session, name, password, device, deviceKey):
            calls.append(("loginDevice", (name, password, device, deviceKey)))
            self.doors[device] = session.client
            session.device = device
            return session.login(name, password).addCallback(lambda _: 0)
        self.patch(Session, "loginDevice", loginDevice)

    def _recorder(self, method):
        calls, answers = self.calls, self.answers

        def request(session, *args):
            calls.append((method, args))
            answer = answers.get(method)
            if isinstance(answer, Exception):
                raise answer
            return succeed(answer)
        return request

    def account(self, name):
        """
        Register C{name} with a password through the binary door, version 1.
        """
        wire = Wire(self.binary)
        wire.hello()
        assert wire.request(Op.REGISTER, name, "password-" + name, publicDer(name))[0] == OK
        return wire

    def wire(self, name, version=3):
        """
        A binary session of account C{name} logged in as device C{phone}
        (version 3) or with the password (below).
        """
        wire = WireV3(self.binary)
        wire.hello(version)
        if version >= 3:
            answer = wire.request(Op.LOGIN, name, "password-" + name, "phone", publicDer(name))
        else:
            answer = wire.request(Op.LOGIN, name, "password-" + name)
        assert answer[0] == OK, answer
        return wire

    def web(self, name, device="browser-1"):
        client = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        fields = {"device": device, "deviceKey": jsonwire.derToPem(publicDer(name))}
        client.ok("login", userId=name, password="password-" + name,
                  **(fields if device else {}))
        return client

    def text(self, name, device="laptop"):
        client = LineClient(TextFactory(self.service))
        tail = " %s %s" % (device, b64(publicDer(name))) if device else ""
        client.ok("CMD::/login %s password-%s%s" % (name, name, tail))
        return client


class BinaryTests(DeviceDoorsTestCase):
    """
    Version 3 on the binary door, and versions 1 and 2 unchanged.
    """

    def test_login(self):
        """A version-3 LOGIN names the device and its key, and answers the state."""
        self.account("alice")
        wire = WireV3(self.binary)
        wire.hello()
        self.assertEqual(wire.request(Op.LOGIN, "alice", "password-alice", "phone", b"KEY"),
                         (OK, (0,)))
        self.assertEqual(self.calls, [("loginDevice",
                                       ("alice", "password-alice", "phone", b"KEY"))])

    def test_register(self):
        """A version-3 REGISTER carries the device, its list and the recovery blob."""
        self.patch(Session, "registerDevice", self._recorder("registerDevice"))
        wire = WireV3(self.binary)
        wire.hello()
        self.assertEqual(wire.request(Op.REGISTER, "bob", "pw", b"IK", "phone", b"L", b"S",
                                      b"B", "invite"), (OK, ()))
        self.assertEqual(self.calls, [("registerDevice", ("bob", "pw", b"IK", "phone", b"L",
                                                          b"S", b"B", "invite"))])

    def test_newRequests(self):
        """Each new request calls the core with its fields and lays out the answer."""
        self.account("alice")
        wire = self.wire("alice")
        self.answers.update(getDevices=(ALICE_LIST, [PENDING]), getRecovery=b"BLOB",
                            shareHistory=2)
        cases = [
            (DeviceOp.GET_DEVICES, ("alice",), ("getDevices", ("alice",)),
             (WIRE_LIST, [devicewire.Pending(PENDING.device, PENDING.key, PENDING.tag,
                                             PENDING.expires)])),
            (DeviceOp.REQUEST_DEVICE, (b"T" * 32,), ("requestDevice", (b"T" * 32,)), ()),
            (DeviceOp.PUBLISH_DEVICES, (b"L", b"S", [("phone", b"K")]),
             ("publishDevices", (b"L", b"S", [("phone", b"K")])), ()),
            (DeviceOp.APPROVE, ("tablet", b"R"), ("approve", ("tablet", b"R")), ()),
            (DeviceOp.GET_RECOVERY, (), ("getRecovery", ()), (b"BLOB",)),
            (DeviceOp.SET_RECOVERY, (b"B",), ("setRecovery", (b"B",)), ()),
            (DeviceOp.SHARE_HISTORY, ("#r", "bob", [("e1", b"{}")]),
             ("shareHistory", ("#r", "bob", [("e1", b"{}")])), (2,)),
            (DeviceOp.RESET_IDENTITY, (b"IK", "d", b"L", b"S", b"B"),
             ("resetIdentity", (b"IK", "d", b"L", b"S", b"B")), ()),
        ]
        for op, values, call, answer in cases:
            del self.calls[:]
            self.assertEqual(wire.request(op, *values), (OK, answer), op.name)
            self.assertEqual(self.calls, [call], op.name)

    def test_joinAndKeys(self):
        """JOIN answers devmembers, topic and history setting; GET_KEYS devmembers."""
        self.account("alice")
        wire = self.wire("alice")
        entry = ("alice", 0, publicDer("alice"), WIRE_LIST)
        self.assertEqual(wire.request(Op.JOIN, "#r", ""), (OK, ([entry], "", 0)))
        self.assertEqual(wire.request(Op.GET_KEYS, 0, "#r"), (OK, ([entry],)))

    def test_createHistory(self):
        """A version-3 CREATE passes the history setting; above 500 is refused."""
        self.account("alice")
        wire = self.wire("alice")
        self.assertEqual(wire.request(Op.CREATE, "#big", "", 500), (OK, ()))
        self.assertEqual(wire.request(Op.CREATE, "#huge", "", 501)[0], 0x01)

    def test_refusals(self):
        """A publish on another head answers that head; 0x09 names devmembers."""
        self.account("alice")
        wire = self.wire("alice")
        self.answers["publishDevices"] = HeadConflict("stale list", Head(4, "cd" * 32))
        self.assertEqual(wire.request(DeviceOp.PUBLISH_DEVICES, b"L", b"S", []),
                         (CONFLICT, (4, "cd" * 32)))
        self.answers["shareHistory"] = StaleRecipients("re-encrypt",
                                                       [("alice", publicDer("alice"))])
        status, (members,) = wire.request(DeviceOp.SHARE_HISTORY, "#r", "bob", [])
        self.assertEqual((status, [m[0] for m in members], members[0][3].devices),
                         (STALE, ["alice"], ALICE_LIST.devices))

    def test_events(self):
        """A version-3 session gets JOINED with the list and the device events; version 2 not."""
        self.account("alice")
        self.account("bob")
        three, two = self.wire("alice"), self.wire("bob", version=2)
        self.assertEqual(two.request(Op.JOIN, "#r", "")[0], OK)
        self.assertEqual(three.request(Op.JOIN, "#r", "")[0], OK)
        self.assertEqual(two.takeEvents(Op.JOINED),
                         [(Op.JOINED, ("#r", "alice", publicDer("alice"), 0))])
        for wire in (three, two):
            wire.protocol.devicesChanged("alice", ALICE_LIST)
            wire.protocol.devicePending(PENDING)
            wire.protocol.approval(b"REPLY")
            wire.protocol.shareWanted("#r", "carol", 20)
            wire.protocol.caughtUp(3)
        self.assertEqual(two.takeEvents(), [])
        self.assertEqual([op for op, _ in three.takeEvents()],
                         [DeviceOp.DEVICES_CHANGED, DeviceOp.DEVICE_PENDING,
                          DeviceOp.APPROVAL, DeviceOp.SHARE_WANTED, DeviceOp.CAUGHT_UP])

    def test_olderVersionsUnchanged(self):
        """A version-2 session's LOGIN keeps its layout and the new opcodes are unknown."""
        self.account("alice")
        wire = self.wire("alice", version=2)
        wire.sendRaw(devicewire.request(DeviceOp.GET_DEVICES, "alice"))
        self.assertEqual(wire.responses(Op.HELLO), [(0x01, ("unknown opcode 0x70",))])
        self.assertEqual(self.calls, [])


class WebSocketTests(DeviceDoorsTestCase):
    """
    Devices on the WebSocket door.
    """

    def test_login(self):
        """login with device and deviceKey answers the device and its state."""
        self.account("alice")
        client = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        self.assertEqual(
            client.request("login", userId="alice", password="password-alice",
                           device="browser-1",
                           deviceKey=jsonwire.derToPem(publicDer("alice"))),
            {"type": "authenticated", "userId": "alice", "device": "browser-1",
             "state": "approved"})
        self.assertEqual(self.calls, [("loginDevice", ("alice", "password-alice",
                                                       "browser-1", publicDer("alice")))])

    def test_requests(self):
        """The new requests call the core with converted fields and answer by name."""
        self.account("alice")
        client = self.web("alice")
        self.answers.update(getDevices=(ALICE_LIST, [PENDING]), getRecovery=b"B",
                            shareHistory=1)
        devices = client.ok("get_devices")
        self.assertEqual((devices["userId"], devices["list"]["signature"],
                          devices["pending"][0]["expires"]),
                         ("alice", "U0lH", "2023-11-14T22:23:20.000Z"))
        self.assertEqual(client.ok("request_device", tag=b64(b"T" * 32)),
                         {"type": "device_requested"})
        self.assertEqual(client.ok("approve", device="tablet", reply=b64(b"R")),
                         {"type": "approved"})
        self.assertEqual(client.ok("get_recovery"), {"type": "recovery", "blob": "Qg=="})
        self.assertEqual(client.ok("share_history", roomId="#r", userId="bob", entries=[
            {"id": "e1", "keys": {"encrypted_keys": {}, "key_ids": {}}}]),
            {"type": "shared", "count": 1})
        self.assertEqual([call[0] for call in self.calls],
                         ["loginDevice", "getDevices", "requestDevice", "approve",
                          "getRecovery", "shareHistory"])
        self.assertEqual(self.calls[3][1], ("tablet", b"R"))

    def test_historyOfDirectMessages(self):
        """history of @user asks the core for @user and names the user as spelt online."""
        self.account("alice")
        self.account("Bob")
        client = self.web("alice")
        self.web("Bob")
        self.patch(Session, "history", self._recorder("history"))
        self.answers["history"] = []
        self.assertEqual(client.ok("history", roomId="@bob", limit=5),
                         {"type": "history", "roomId": "@Bob", "messages": []})
        self.assertEqual(self.calls[-1], ("history", ("@bob", 5, 0)))

    def test_headConflict(self):
        """A publish on another head is refused conflict with the head."""
        self.account("alice")
        client = self.web("alice")
        self.answers["publishDevices"] = HeadConflict("stale list", Head(4, "cd"))
        self.assertEqual(client.request("publish_devices", text="", signature="",
                                        devices=[]),
                         {"type": "error", "code": "conflict", "message": "stale list",
                          "head": {"v": 4, "h": "cd"}})

    def test_membersAndEvents(self):
        """A device session's members and user_joined carry lists; a legacy one's do not."""
        self.account("alice")
        self.account("bob")
        device, legacy = self.web("alice"), self.web("bob", device=None)
        legacy.ok("join", roomId="#r")
        joined = device.ok("join", roomId="#r")
        self.assertEqual((joined["history"], [m["devices"]["text"] for m in joined["members"]]),
                         (0, [b64(ALICE_LIST.text), ""]))
        event, = [m for m in legacy.take() if m["type"] == "user_joined"]
        self.assertNotIn("devices", event)
        legacy.ok("leave", roomId="#r")
        legacy.ok("join", roomId="#r")
        event, = [m for m in device.take() if m["type"] == "user_joined"]
        self.assertEqual(event["devices"], {"text": "", "signature": "", "devices": []})
        door = self.doors["browser-1"]
        door.devicesChanged("alice", ALICE_LIST)
        door.caughtUp(2)
        self.assertEqual([m["type"] for m in device.take()], ["devices_changed", "caught_up"])


class TextTests(DeviceDoorsTestCase):
    """
    Devices on the text door.
    """

    def test_loginAndCreate(self):
        """/login with a device answers its state; /create takes history=N."""
        self.account("alice")
        client = LineClient(TextFactory(self.service))
        self.assertEqual(client.ok("CMD::/login alice password-alice laptop "
                                   + b64(publicDer("alice"))),
                         {"type": "authenticated", "userId": "alice", "device": "laptop",
                          "state": "approved"})
        self.assertEqual(client.ok("CMD::/create #r secret history=50"),
                         {"type": "created", "roomId": "#r"})
        self.assertEqual(client.status("CMD::/create #s history=501"), 0x01)
        self.assertEqual(client.status("CMD::/login alice pw laptop"), 0x01)

    def test_jsonCommands(self):
        """/device-publish, /share and /reset-identity take the WebSocket fields as JSON."""
        self.account("alice")
        client = self.text("alice")
        pem = jsonwire.derToPem(publicDer("alice"))
        publish = json.dumps({"text": b64(b"L"), "signature": b64(b"S"),
                              "devices": [{"id": "phone", "publicKey": pem}]})
        self.assertEqual(client.ok("CMD::/device-publish " + publish),
                         {"type": "devices_published"})
        self.answers["shareHistory"] = 0
        entries = json.dumps([{"id": "e1", "keys": {"encrypted_keys": {}, "key_ids": {}}}])
        self.assertEqual(client.ok("CMD::/share #r bob " + entries),
                         {"type": "shared", "count": 0})
        self.assertEqual(self.calls[1:], [
            ("publishDevices", (b"L", b"S", [("phone", publicDer("alice"))])),
            ("shareHistory", ("#r", "bob", [("e1", b'{"encrypted_keys":{},"key_ids":{}}')]))])
        self.assertEqual(client.request("CMD::/device-publish {\"text\": 1}"),
                         b"ERR::01::publish_devices.text must be base64")
        self.assertEqual(client.request("CMD::/share #r bob {}"),
                         b"ERR::01::/share takes a JSON array of entries")

    def test_historyOfDirectMessages(self):
        """/history @USER asks the core for @USER."""
        self.account("alice")
        client = self.text("alice")
        self.patch(Session, "history", self._recorder("history"))
        self.answers["history"] = []
        self.assertEqual(client.ok("CMD::/history @bob 3"),
                         {"type": "history", "roomId": "@bob", "messages": []})
        self.assertEqual(self.calls[-1], ("history", ("@bob", 3, 0)))

    def test_otherCommands(self):
        """The remaining device commands call the core with their decoded arguments."""
        self.account("alice")
        client = self.text("alice")
        self.answers["getRecovery"] = b"B"
        pem = jsonwire.derToPem(publicDer("new"))
        reset = json.dumps({"publicKey": pem, "device": "d", "text": b64(b"L"),
                            "signature": b64(b"S"), "blob": b64(b"B")})
        lines = [("CMD::/device-request " + b64(b"T" * 32), "device_requested"),
                 ("CMD::/approve tablet " + b64(b"R"), "approved"),
                 ("CMD::/recovery", "recovery"),
                 ("CMD::/recovery-set " + b64(b"B"), "recovery_set"),
                 ("CMD::/reset-identity " + reset, "identity_reset")]
        self.assertEqual([client.ok(line)["type"] for line, _ in lines],
                         [kind for _, kind in lines])
        self.assertEqual(self.calls[1:], [
            ("requestDevice", (b"T" * 32,)), ("approve", ("tablet", b"R")), ("getRecovery", ()),
            ("setRecovery", (b"B",)),
            ("resetIdentity", (publicDer("new"), "d", b"L", b"S", b"B"))])

    def test_authWithDevice(self):
        """/auth NAME SIGNATURE DEVICE logs in as that device."""
        client = LineClient(TextFactory(self.service))
        client.ok("CMD::/challenge")
        answer = client.ok("CMD::/auth alice %s phone" % (b64(b"SIG"),))
        self.assertEqual((answer["type"], answer["device"], answer["state"]),
                         ("authenticated", "phone", "approved"))
        self.assertEqual(self.calls, [("authDevice", ("alice", "phone", b"SIG"))])

    def test_headConflictAndDevices(self):
        """ERR::07 carries the head; /devices lists a user's devices."""
        self.account("alice")
        client = self.text("alice")
        self.answers["publishDevices"] = HeadConflict("stale list", Head(4, "cd"))
        publish = json.dumps({"text": "", "signature": "", "devices": []})
        self.assertEqual(client.request("CMD::/device-publish " + publish),
                         b'ERR::07::{"message":"stale list","head":{"v":4,"h":"cd"}}')
        self.answers["getDevices"] = (ALICE_LIST, [])
        answer = client.ok("CMD::/devices alice")
        self.assertEqual(answer["list"]["devices"][0]["id"], "phone")
