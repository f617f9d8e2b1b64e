"""
Tests for L{chatd.protocols.jsondevices}: the JSON requests, answers and
events of devices (protocol version 3) on the text and WebSocket doors.
"""

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from chatd.protocols import jsondevices, jsonwire
from chatd.protocols.devicewire import NO_LIST, DeviceList, Pending
from chatd.protocols.jsonrequests import MalformedRequest
from chatd.protocols.jsonwire import derToPem
from chatd.test.fakes import publicDer


def b64(data):
    return base64.b64encode(data).decode("ascii")


KEY = publicDer("alice")
PEM = derToPem(KEY)


def parse(**obj):
    return jsondevices.parseRequest(json.dumps(obj))


class ParseTests(SynchronousTestCase):
    """
    The new requests and fields are parsed strictly.
    """

    def test_loginWithDevice(self):
        """login takes device and deviceKey (PEM, to DER), together."""
        request = parse(type="login", id=1, userId="alice", password="pw", device="phone",
                        deviceKey=PEM)
        self.assertEqual(request.fields, {"userId": "alice", "password": "pw",
                                          "device": "phone", "deviceKey": KEY})
        error = self.assertRaises(MalformedRequest, parse, type="login", id=2, userId="a",
                                  password="p", device="phone")
        self.assertEqual((error.message, error.requestId),
                         ("login needs 'device' and 'deviceKey' together", 2))

    def test_plainLoginUnchanged(self):
        """A login without a device parses as before."""
        self.assertEqual(parse(type="login", userId="a", password="p").fields,
                         {"userId": "a", "password": "p"})

    def test_register(self):
        """register takes device, list {text, signature} and blob, as bytes."""
        request = parse(type="register", userId="alice", publicKey=PEM, password="pw",
                        device="phone", list={"text": b64(b"LIST"), "signature": b64(b"S")},
                        blob=b64(b"B"))
        self.assertEqual(request.fields["list"], DeviceList(b"LIST", b"S", ()))
        self.assertEqual(request.fields["blob"], b"B")
        self.assertRaises(MalformedRequest, parse, type="register", userId="a",
                          publicKey=PEM, list={"text": "", "signature": ""})

    def test_publish(self):
        """publish_devices: text, signature and the devices' keys, PEM to DER."""
        request = parse(type="publish_devices", text=b64(b"L"), signature=b64(b"S"),
                        devices=[{"id": "phone", "publicKey": PEM}])
        self.assertEqual(request.fields, {"text": b"L", "signature": b"S",
                                          "devices": [("phone", KEY)]})

    def test_badNested(self):
        """A keyless device, a wrong list item and bad base64 are refused clearly."""
        cases: list = [
            (dict(type="publish_devices", text="", signature="", devices=[{"id": "x"}]),
             "a device needs the field 'publicKey'"),
            (dict(type="publish_devices", text="", signature="", devices=["x"]),
             "each of devices must be an object"),
            (dict(type="request_device", tag="!!"), "tag must be standard base64"),
            (dict(type="share_history", roomId="#r", userId="bob",
                  entries=[{"id": "e", "keys": [], "x": 1}]), "a share has no field 'x'"),
        ]
        for obj, message in cases:
            error = self.assertRaises(MalformedRequest, parse, **obj)
            self.assertEqual(error.message, message)

    def test_share(self):
        """share_history entries become (envelope id, JSON bytes of the key maps)."""
        keys = {"encrypted_keys": {"bob/phone": "AA=="}, "key_ids": {"bob/phone": "k"}}
        request = parse(type="share_history", roomId="#r", userId="bob",
                        entries=[{"id": "e1", "keys": keys}])
        ((envelopeId, data),) = request.fields["entries"]
        self.assertEqual((envelopeId, json.loads(data)), ("e1", keys))

    def test_unknownFieldStillRefused(self):
        """The new requests refuse fields they do not have, as every request does."""
        error = self.assertRaises(MalformedRequest, parse, type="get_recovery", blob="")
        self.assertEqual(error.message, "get_recovery has no field 'blob'")


class BuildTests(SynchronousTestCase):
    """
    The answers and events, as JSON.
    """

    def test_listObject(self):
        """A list is base64 text and signature and PEM keys; no list is empty."""
        obj = jsonwire.listObject(DeviceList(b"T", b"S", (("phone", KEY),)))
        self.assertEqual(obj, {"text": "VA==", "signature": "Uw==",
                               "devices": [{"id": "phone", "publicKey": PEM}]})
        self.assertEqual(jsonwire.listObject(NO_LIST),
                         {"text": "", "signature": "", "devices": []})

    def test_devices(self):
        """devices carries the list and the pending devices with tag and ISO expiry."""
        obj = json.loads(jsondevices.devices("alice", NO_LIST,
                                             [Pending("tab", KEY, b"TAG", 1_700_000_600_000)], 7))
        self.assertEqual(obj, {"type": "devices", "id": 7, "userId": "alice",
                               "list": {"text": "", "signature": "", "devices": []},
                               "pending": [{"id": "tab", "publicKey": PEM, "tag": "VEFH",
                                            "expires": "2023-11-14T22:23:20.000Z"}]})

    def test_members(self):
        """For a device session, members gain their lists; otherwise they are unchanged."""
        lists = {"alice": DeviceList(b"T", b"S", (("phone", KEY),)), "rand0": NO_LIST}
        pairs = [("alice", KEY), ("rand0", KEY)]
        objs = json.loads(jsonwire.keys(pairs, guests={"rand0"}, devices=lists))["members"]
        self.assertEqual([o["devices"]["text"] for o in objs], ["VA==", ""])
        self.assertEqual([o["guest"] for o in objs], [False, True])
        plain = json.loads(jsonwire.keys(pairs, guests={"rand0"}))["members"]
        self.assertEqual([sorted(o) for o in plain], [["guest", "publicKey", "userId"]] * 2)

    def test_events(self):
        """The new events' objects."""
        self.assertEqual(json.loads(jsondevices.approval(b"R")), {"type": "approval",
                                                                  "reply": "Ug=="})
        self.assertEqual(json.loads(jsondevices.shareWanted("#r", "bob", 50)),
                         {"type": "share_wanted", "roomId": "#r", "userId": "bob",
                          "history": 50})
        self.assertEqual(json.loads(jsondevices.caughtUp(3)), {"type": "caught_up", "count": 3})
        pending = json.loads(jsondevices.devicePending(Pending("tab", KEY, b"T", 0)))
        self.assertEqual(pending["expires"], "1970-01-01T00:00:00.000Z")

    def test_headConflict(self):
        """A publish on another head is refused conflict with that head."""
        self.assertEqual(json.loads(jsondevices.headConflict("stale", (4, "ab"), 9)),
                         {"type": "error", "id": 9, "code": "conflict", "message": "stale",
                          "head": {"v": 4, "h": "ab"}})

    def test_authenticated(self):
        """A device login answers the device and its state."""
        self.assertEqual(json.loads(jsondevices.authenticated("alice", "tab", 1)),
                         {"type": "authenticated", "userId": "alice", "device": "tab",
                          "state": "pending"})
