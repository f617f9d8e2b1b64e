"""
Tests for L{chatd.protocols.jsonwire} (values, every object builder) and
L{chatd.protocols.jsonrequests} (the strict request parser).
"""

import base64
import json
from typing import Any, Dict, List, Tuple

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e
from chatd.errors import BadRequest, Status
from chatd.protocols import jsonrequests, jsonwire
from chatd.protocols.jsonrequests import MalformedRequest
from chatd.protocols.jsonwire import NO_ID
from chatd.test.fakes import privateKey, publicDer
from chatd.test.test_jsonmoderation import MODERATION_CASES

# 2023-11-14T22:13:20.123Z
TS = 1_700_000_000_123
ISO = "2023-11-14T22:13:20.123Z"


def pem(name):
    return privateKey(name).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class KeyTests(SynchronousTestCase):
    """
    Public keys between PEM and SubjectPublicKeyInfo DER.
    """

    def test_derToPemIsWhatCryptographyWrites(self):
        """
        A DER key becomes exactly the PEM text C{cryptography} writes for it.
        """
        self.assertEqual(jsonwire.derToPem(publicDer("alice")), pem("alice"))

    def test_pemToDerRoundTrip(self):
        """
        PEM text, with LF or CRLF line ends and surrounding blanks, gives back
        the same DER bytes.
        """
        der = publicDer("alice")
        self.assertEqual(jsonwire.pemToDer(pem("alice")), der)
        self.assertEqual(jsonwire.pemToDer("\n  " + pem("alice").replace("\n", "\r\n")), der)

    def test_pemToDerRefusals(self):
        """
        Text without the PUBLIC KEY armour, with bad base64 or with an empty body
        is refused with a message naming publicKey.
        """
        good = pem("alice")
        for text in ["", good.replace("PUBLIC KEY", "RSA PUBLIC KEY"),
                     base64.b64encode(publicDer("alice")).decode(),
                     good.replace("M", "*", 1),
                     "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----"]:
            e = self.assertRaises(BadRequest, jsonwire.pemToDer, text)
            self.assertIn("publicKey", e.message)

    def test_base64(self):
        """
        Standard padded base64 decodes; anything else is refused, naming the
        value.
        """
        self.assertEqual(jsonwire.decodeBase64("AAE=", "x"), b"\x00\x01")
        self.assertEqual(jsonwire.encodeBase64(b"\x00\x01"), "AAE=")
        for text in ["AAE", "AA-_", "é"]:
            e = self.assertRaises(BadRequest, jsonwire.decodeBase64, text, "the signature")
            self.assertIn("the signature", e.message)


class TimestampTests(SynchronousTestCase):
    """
    Server timestamps between milliseconds and ISO 8601.
    """

    def test_format(self):
        """
        Milliseconds become UTC with exactly three fractional digits and Z.
        """
        self.assertEqual(jsonwire.formatTimestamp(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(jsonwire.formatTimestamp(TS), ISO)
        self.assertEqual(jsonwire.formatTimestamp(TS - 123), "2023-11-14T22:13:20.000Z")

    def test_parseIsExact(self):
        """
        Parsing inverts formatting to the millisecond.
        """
        for ms in [0, 1, 999, TS, 253402300799999]:
            self.assertEqual(jsonwire.parseTimestamp(jsonwire.formatTimestamp(ms)), ms)

    def test_parseRefusals(self):
        """
        Other spellings, impossible dates and instants before 1970 are refused.
        """
        for text in ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.12Z",
                     "2023-11-14T22:13:20.123+00:00", "2023-11-14 22:13:20.123Z",
                     "2023-02-30T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
                     "２023-11-14T22:13:20.123Z", ISO + "\n"]:
            self.assertRaises(BadRequest, jsonwire.parseTimestamp, text)

    def test_parseBefore(self):
        """
        C{before} is an ISO string or whole milliseconds from 0 to 2**63 - 1.
        """
        self.assertEqual(jsonwire.parseBefore(ISO), TS)
        self.assertEqual(jsonwire.parseBefore(TS), TS)
        self.assertEqual(jsonwire.parseBefore(0), 0)
        self.assertEqual(jsonwire.parseBefore(2**63 - 1), 2**63 - 1)
        for value in [-1, 2**63, True, 1.5, None, "12"]:
            self.assertRaises(BadRequest, jsonwire.parseBefore, value)


class ErrorCodeTests(SynchronousTestCase):
    """
    Status names.
    """

    def test_everyRefusalHasAName(self):
        """
        Every status but OK has the code name section 4 gives it.
        """
        self.assertEqual({s: jsonwire.errorCode(s) for s in Status if s != Status.OK}, {
            Status.ERROR: "bad_request", Status.RATE_LIMITED: "rate_limited",
            Status.AUTH_REQUIRED: "auth_required", Status.FORBIDDEN: "forbidden",
            Status.NOT_FOUND: "not_found", Status.CONFLICT: "conflict",
            Status.TOO_LARGE: "too_large", Status.STALE_RECIPIENTS: "stale_recipients",
            Status.UNAVAILABLE: "unavailable"})
        self.assertEqual(jsonwire.errorCode(6), "not_found")


class BuilderTests(SynchronousTestCase):
    """
    Each response and event object, byte for byte.
    """

    def setUp(self):
        self.pem = json.dumps(pem("alice")).encode()
        self.members = [("alice", publicDer("alice"))]
        self.memberList = b'[{"userId":"alice","publicKey":' + self.pem + b',"guest":false}]'

    def test_responsesWithoutId(self):
        """
        Responses are compact JSON, C{type} first, fields in the order of
        section 4.
        """
        cases = [
            (jsonwire.welcome("rand0"), b'{"type":"welcome","name":"rand0","protocol":1}'),
            (jsonwire.challenge(b"\x00\x01"), b'{"type":"challenge","challenge":"AAE="}'),
            (jsonwire.registered("alice"), b'{"type":"registered","userId":"alice"}'),
            (jsonwire.authenticated("alice"), b'{"type":"authenticated","userId":"alice"}'),
            (jsonwire.joined("#a", self.members, guests=()),
             b'{"type":"joined","roomId":"#a","members":' + self.memberList + b"}"),
            (jsonwire.left("#a"), b'{"type":"left","roomId":"#a"}'),
            (jsonwire.sentToRoom("#a", TS),
             b'{"type":"sent","roomId":"#a","timestamp":"' + ISO.encode() + b'"}'),
            (jsonwire.sentToUser("bob", TS),
             b'{"type":"sent","to":"bob","timestamp":"' + ISO.encode() + b'"}'),
            (jsonwire.rooms(["#a", "#b"]), b'{"type":"rooms","rooms":["#a","#b"]}'),
            (jsonwire.users([], guests=()), b'{"type":"users","users":[],"guests":[]}'),
            (jsonwire.users(["alice", "rand1"], guests={"rand1"}),
             b'{"type":"users","users":["alice","rand1"],"guests":["rand1"]}'),
            (jsonwire.keys(self.members, guests=()),
             b'{"type":"keys","members":' + self.memberList + b"}"),
            (jsonwire.keys(self.members, guests={"alice"}),
             b'{"type":"keys","members":' + self.memberList.replace(b"false", b"true") + b"}"),
            (jsonwire.keySet(), b'{"type":"key_set"}'),
            (jsonwire.pong(), b'{"type":"pong"}'),
            (jsonwire.created("#a"), b'{"type":"created","roomId":"#a"}'),
            (jsonwire.switched("#a"), b'{"type":"switched","roomId":"#a"}'),
            (jsonwire.renamed("rand0", "bob", guest=True),
             b'{"type":"renamed","old":"rand0","new":"bob","guest":true}'),
            (jsonwire.bye(), b'{"type":"bye"}'),
            (jsonwire.error(Status.NOT_FOUND, "no such room: #x"),
             b'{"type":"error","code":"not_found","message":"no such room: #x"}'),
        ]
        for built, expected in cases:
            self.assertEqual(built, expected)

    def test_idEchoedAfterType(self):
        """
        A request's id, whatever JSON value it is, comes right after C{type};
        L{NO_ID} leaves it out.
        """
        self.assertEqual(jsonwire.pong(7), b'{"type":"pong","id":7}')
        self.assertEqual(jsonwire.pong(None), b'{"type":"pong","id":null}')
        self.assertEqual(jsonwire.left("#a", "x"), b'{"type":"left","id":"x","roomId":"#a"}')
        self.assertEqual(jsonwire.error(Status.ERROR, "m", requestId=[1]),
                         b'{"type":"error","id":[1],"code":"bad_request","message":"m"}')
        self.assertEqual(jsonwire.pong(NO_ID), b'{"type":"pong"}')

    def test_staleRecipients(self):
        """
        A stale-recipients error lists the members with PEM keys and whether
        each is a guest; the text door's form is the message and the members
        alone.
        """
        self.assertEqual(
            jsonwire.error(Status.STALE_RECIPIENTS, "stale", self.members, requestId=1),
            b'{"type":"error","id":1,"code":"stale_recipients","message":"stale","members":'
            + self.memberList + b"}")
        self.assertEqual(jsonwire.staleRecipients("stale", self.members, guests=()),
                         b'{"message":"stale","members":' + self.memberList + b"}")

    def test_events(self):
        """
        Events carry no id; key events carry PEM.
        """
        cases = [
            (jsonwire.userJoined("#a", "alice", publicDer("alice"), False),
             b'{"type":"user_joined","userId":"alice","roomId":"#a","publicKey":'
             + self.pem + b',"guest":false}'),
            (jsonwire.userJoined("#a", "rand1", publicDer("alice"), True),
             b'{"type":"user_joined","userId":"rand1","roomId":"#a","publicKey":'
             + self.pem + b',"guest":true}'),
            (jsonwire.userLeft("#a", "alice"),
             b'{"type":"user_left","userId":"alice","roomId":"#a"}'),
            (jsonwire.keyChanged("alice", publicDer("alice"), False),
             b'{"type":"key_changed","userId":"alice","publicKey":' + self.pem
             + b',"guest":false}'),
            (jsonwire.warning(3, "idle"), b'{"type":"warning","code":3,"message":"idle"}'),
        ]
        for built, expected in cases:
            self.assertEqual(built, expected)

    def test_envelopesSplicedVerbatim(self):
        """
        Message events and history rows carry the core's envelope bytes as they
        are, not re-encoded.
        """
        envelope = b'{"v":1,  "x":"\\u00e9"}'
        self.assertEqual(
            jsonwire.chatMessage("#a", "alice", TS, envelope),
            b'{"type":"chat_message","userId":"alice","roomId":"#a","envelope":' + envelope
            + b',"timestamp":"' + ISO.encode() + b'"}')
        self.assertEqual(
            jsonwire.directMessage("alice", TS, envelope),
            b'{"type":"dm","userId":"alice","envelope":' + envelope
            + b',"timestamp":"' + ISO.encode() + b'"}')
        self.assertEqual(
            jsonwire.history("#a", [("alice", TS, envelope), ("bob", TS + 1, b"{}")], requestId=2),
            b'{"type":"history","id":2,"roomId":"#a","messages":[{"userId":"alice","timestamp":"'
            + ISO.encode() + b'","envelope":' + envelope
            + b'},{"userId":"bob","timestamp":"2023-11-14T22:13:20.124Z","envelope":{}}]}')
        self.assertEqual(jsonwire.history("#a", []),
                         b'{"type":"history","roomId":"#a","messages":[]}')

    def test_historyBudgetDropsOldest(self):
        """
        History over its budget leaves out the oldest rows, keeping the newest
        that fit, and never goes over.
        """
        rows = [("a", TS + i, b'"%s"' % (b"x" * 100)) for i in range(10)]
        whole = jsonwire.history("#a", rows)
        self.assertEqual(jsonwire.history("#a", rows, budget=len(whole)), whole)
        for budget in [len(whole) - 1, 700, 300, 60, 10]:
            built = jsonwire.history("#a", rows, budget=budget)
            kept = json.loads(built)["messages"]
            self.assertLessEqual(len(built), max(budget, len(jsonwire.history("#a", []))))
            self.assertEqual([m["timestamp"] for m in kept],
                             [jsonwire.formatTimestamp(TS + i) for i in range(10 - len(kept), 10)])
            more = jsonwire.history("#a", rows[-len(kept) - 1:])
            self.assertGreater(len(more), budget)

    def test_fileObjects(self):
        """
        File responses and events: C{file_ok} with the transfer id, the offer
        with its target field and spliced envelope, chunks in base64.
        """
        cases = [
            (jsonwire.fileOk(4, requestId=1), b'{"type":"file_ok","id":1,"transferId":4}'),
            (jsonwire.fileOffered(4, "alice", True, "#a", 10, 2, 8, b'{"v":1}'),
             b'{"type":"file_offered","transferId":4,"from":"alice","roomId":"#a","size":10,'
             b'"chunks":2,"chunkSize":8,"envelope":{"v":1}}'),
            (jsonwire.fileOffered(4, "alice", False, "bob", 0, 1, 8, b"{}"),
             b'{"type":"file_offered","transferId":4,"from":"alice","to":"bob","size":0,'
             b'"chunks":1,"chunkSize":8,"envelope":{}}'),
            (jsonwire.fileStart(4, 2, 8),
             b'{"type":"file_start","transferId":4,"accepted":2,"window":8}'),
            (jsonwire.fileChunk(4, 1, b"\x00\x01"),
             b'{"type":"file_chunk","transferId":4,"index":1,"data":"AAE="}'),
            (jsonwire.fileNext(4, 9), b'{"type":"file_next","transferId":4,"limit":9}'),
            (jsonwire.fileDone(4), b'{"type":"file_done","transferId":4}'),
            (jsonwire.fileCancel(4, "offer expired"),
             b'{"type":"file_cancel","transferId":4,"reason":"offer expired"}'),
        ]
        for built, expected in cases:
            self.assertEqual(built, expected)

    def test_namesAreEscaped(self):
        """
        Output is ASCII: other characters, newlines and lone surrogates are
        escaped.
        """
        built = jsonwire.error(Status.ERROR, "bad \ud800 é\n")
        self.assertEqual(built, b'{"type":"error","code":"bad_request","message":'
                                b'"bad \\ud800 \\u00e9\\n"}')


class ParseRequestTests(SynchronousTestCase):
    """
    The strict parser of WebSocket requests.
    """

    def parse(self, obj):
        return jsonrequests.parseRequest(json.dumps(obj))

    def refused(self, text):
        return self.assertRaises(MalformedRequest, jsonrequests.parseRequest, text)

    def test_everyTypeParses(self):
        """
        A request of every type, with its fields, parses; values are converted
        for the core and optional fields left out stay absent.
        """
        key = pem("alice")
        envelope = {"v": 1, "to": {"room": "#a"}, "é": "\ud800"}
        cases = [
            ({"type": "get_challenge"}, {}),
            ({"type": "register", "userId": "alice", "publicKey": key},
             {"userId": "alice", "publicKey": publicDer("alice")}),
            ({"type": "register", "userId": "alice", "publicKey": key, "password": "p"},
             {"userId": "alice", "publicKey": publicDer("alice"), "password": "p"}),
            ({"type": "authenticate", "userId": "alice", "signature": "AAE="},
             {"userId": "alice", "signature": b"\x00\x01"}),
            ({"type": "login", "userId": "alice", "password": "p"},
             {"userId": "alice", "password": "p"}),
            ({"type": "join"}, {}),
            ({"type": "join", "roomId": "#a", "password": "p"}, {"roomId": "#a", "password": "p"}),
            ({"type": "switch_room", "roomId": "#a"}, {"roomId": "#a"}),
            ({"type": "leave", "roomId": "#a"}, {"roomId": "#a"}),
            ({"type": "chat_message", "roomId": "#a", "envelope": envelope},
             {"roomId": "#a", "envelope": json.dumps(envelope, separators=(",", ":")).encode()}),
            ({"type": "dm", "to": "bob", "envelope": {}}, {"to": "bob", "envelope": b"{}"}),
            ({"type": "history", "roomId": "#a"}, {"roomId": "#a"}),
            ({"type": "history", "roomId": "#a", "limit": 5, "before": ISO},
             {"roomId": "#a", "limit": 5, "before": TS}),
            ({"type": "history", "roomId": "#a", "before": TS}, {"roomId": "#a", "before": TS}),
            ({"type": "list_rooms"}, {}),
            ({"type": "list_users"}, {}),
            ({"type": "list_users", "roomId": "#a"}, {"roomId": "#a"}),
            ({"type": "get_keys", "roomId": "#a"}, {"roomId": "#a"}),
            ({"type": "get_keys", "userId": "bob"}, {"userId": "bob"}),
            ({"type": "set_key", "publicKey": key}, {"publicKey": publicDer("alice")}),
            ({"type": "ping"}, {}),
            ({"type": "file_offer", "roomId": "#a", "size": 2**64 - 1, "chunks": 2,
              "chunkSize": 8, "envelope": {}},
             {"roomId": "#a", "size": 2**64 - 1, "chunks": 2, "chunkSize": 8, "envelope": b"{}"}),
            ({"type": "file_offer", "to": "bob", "size": 0, "chunks": 1, "chunkSize": 1,
              "envelope": {}},
             {"to": "bob", "size": 0, "chunks": 1, "chunkSize": 1, "envelope": b"{}"}),
            ({"type": "file_answer", "transferId": 3, "accept": True},
             {"transferId": 3, "accept": 1}),
            ({"type": "file_answer", "transferId": 3, "accept": False},
             {"transferId": 3, "accept": 0}),
            ({"type": "file_chunk", "transferId": 3, "index": 0, "data": "AAE="},
             {"transferId": 3, "index": 0, "data": b"\x00\x01"}),
            ({"type": "file_ack", "transferId": 3, "index": 2**32 - 1},
             {"transferId": 3, "index": 2**32 - 1}),
            ({"type": "file_done", "transferId": 3}, {"transferId": 3}),
            ({"type": "file_cancel", "transferId": 3, "reason": "é" * 32767},
             {"transferId": 3, "reason": "é" * 32767}),
        ]
        # The moderation requests' rows are in test_jsonmoderation.
        cases += [(json.loads(text), fields) for text, fields in MODERATION_CASES]
        self.assertEqual({obj["type"] for obj, _ in cases}, set(jsonrequests.REQUESTS))
        for obj, fields in cases:
            request = self.parse(obj)
            self.assertEqual((request.type, request.fields, request.id),
                             (obj["type"], fields, NO_ID))

    def test_envelopeReachesTheCoreIntact(self):
        """
        An envelope object becomes bytes that L{e2e.Envelope.parse} reads back
        as the same envelope, signature still valid.
        """
        keys = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        sealed = e2e.seal("alice", privateKey("alice"), ("room", "#a"), keys, b"hi")
        request = self.parse({"type": "chat_message", "roomId": "#a",
                              "envelope": json.loads(sealed)})
        envelope = e2e.Envelope.parse(request.fields["envelope"])
        self.assertTrue(envelope.verifySignature(publicDer("alice")))
        self.assertEqual(e2e.openEnvelope(envelope, "bob", privateKey("bob"), publicDer("alice")),
                         b"hi")

    def test_id(self):
        """
        Any JSON value of C{id} is kept, C{null} included.
        """
        self.assertEqual(self.parse({"type": "ping", "id": "a1"}).id, "a1")
        self.assertEqual(self.parse({"id": 3, "type": "ping"}).id, 3)
        self.assertIsNone(self.parse({"type": "ping", "id": None}).id)

    def test_notARequest(self):
        """
        Text that is not JSON, JSON that is not an object, NaN and nesting too
        deep for the parser are refused, with no id to echo.
        """
        for text in ["", "ping", "[]", '"ping"', "null", '{"type":"ping"', '{"type":NaN}',
                     '{"type":"ping","id":Infinity}', "[" * 100000]:
            e = self.refused(text)
            self.assertIs(e.requestId, NO_ID)
            self.assertEqual(e.status, Status.ERROR)

    def test_duplicateKeys(self):
        """
        A duplicate key, at the top or inside the envelope, is refused.
        """
        self.assertIn("duplicate key 'type'",
                      self.refused('{"type":"ping","type":"list_rooms"}').message)
        self.assertIn("duplicate key 'from'", self.refused(
            '{"type":"dm","to":"b","envelope":{"from":"a","from":"c"}}').message)

    def test_type(self):
        """
        A missing or non-string type is refused; an unknown one gets section
        4's message; the id is kept for the refusal.
        """
        for obj in [{"id": 1}, {"id": 1, "type": 5}, {"id": 1, "type": None}]:
            e = self.refused(json.dumps(obj))
            self.assertEqual((e.requestId, e.message), (1, "a request needs a string 'type'"))
        e = self.refused('{"type":"x","id":"q"}')
        self.assertEqual((e.requestId, e.message), ("q", "Unknown message type: x"))

    def test_fields(self):
        """
        Missing, unknown and wrong-typed fields are refused, each with a message
        naming the field, and the id kept.
        """
        cases: List[Tuple[Dict[str, Any], str]] = [
            ({"type": "leave"}, "leave needs the field 'roomId'"),
            ({"type": "join", "roomid": "#a"}, "join has no field 'roomid'"),
            ({"type": "leave", "roomId": 5}, "leave.roomId must be a string of valid Unicode"),
            ({"type": "join", "password": None}, "join.password must be a string of valid Unicode"),
            ({"type": "history", "roomId": "#a", "limit": True},
             "history.limit must be a whole number from 0"),
            ({"type": "history", "roomId": "#a", "limit": -1},
             "history.limit must be a whole number from 0"),
            ({"type": "history", "roomId": "#a", "limit": 1.0},
             "history.limit must be a whole number from 0"),
            ({"type": "history", "roomId": "#a", "before": [1]},
             "history.before must be an ISO 8601 timestamp or milliseconds"),
            ({"type": "dm", "to": "b", "envelope": "{}"}, "dm.envelope must be an envelope object"),
            ({"type": "set_key", "publicKey": {}}, "set_key.publicKey must be a PEM public key"),
            ({"type": "authenticate", "userId": "a", "signature": "!!"},
             "signature must be standard base64"),
            ({"type": "get_keys"}, "get_keys needs exactly one of 'roomId' and 'userId'"),
            ({"type": "get_keys", "roomId": "#a", "userId": "b"},
             "get_keys needs exactly one of 'roomId' and 'userId'"),
            ({"type": "login", "userId": "a", "password": "\ud800"},
             "login.password must be a string of valid Unicode"),
            ({"type": "file_offer", "size": 1, "chunks": 1, "chunkSize": 1, "envelope": {}},
             "file_offer needs exactly one of 'roomId' and 'to'"),
            ({"type": "file_offer", "roomId": "#a", "to": "b", "size": 1, "chunks": 1,
              "chunkSize": 1, "envelope": {}},
             "file_offer needs exactly one of 'roomId' and 'to'"),
            ({"type": "file_offer", "to": "b", "size": 2**64, "chunks": 1, "chunkSize": 1,
              "envelope": {}}, "file_offer.size must be a whole number from 0 to %d" % (2**64 - 1)),
            ({"type": "file_ack", "transferId": -1, "index": 0},
             "file_ack.transferId must be a whole number from 0 to %d" % (2**32 - 1)),
            ({"type": "file_answer", "transferId": 1, "accept": 1},
             "file_answer.accept must be true or false"),
            ({"type": "file_chunk", "transferId": 1, "index": 0, "data": "A"},
             "data must be standard base64"),
            ({"type": "file_cancel", "transferId": 1, "reason": "é" * 32768},
             "file_cancel.reason must be text of at most 65535 UTF-8 bytes"),
            ({"type": "file_cancel", "transferId": 1, "reason": "\udc00"},
             "file_cancel.reason must be text of at most 65535 UTF-8 bytes"),
        ]
        for obj, message in cases:
            e = self.refused(json.dumps(dict(obj, id=9)))
            self.assertEqual((e.requestId, e.message), (9, message))
        e = self.refused(json.dumps({"type": "history", "roomId": "#a", "before": "yesterday"}))
        self.assertIn("2023-11-14T22:13:20.000Z", e.message)
        e = self.refused(json.dumps({"type": "set_key", "publicKey": "AAAA"}))
        self.assertIn("PEM", e.message)
