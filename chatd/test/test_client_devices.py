"""
Tests for the terminal client's devices (L{chatd.client.devices},
L{chatd.client.approving}, L{chatd.client.devicecommands}): registration,
approval of a new device, the identity device's commands, what is sealed to
whom, and what is believed of a (possibly lying) server, against a scripted
version-3 connection.
"""


import base64
import json
import os

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd import devicecodes, e2e
from chatd.client.chat import ChatClient, Room
from chatd.client.connection import ClientProtocol, ServerError
from chatd.client.console import Console
from chatd.client.devicestore import ThisDevice, loadDevice, saveDevice
from chatd.client.errors import ClientError
from chatd.client.keystore import publicKeyDer
from chatd.devicelist import DeviceList
from chatd.protocols import devicewire
from chatd.protocols.devicewire import NO_LIST, DeviceOp
from chatd.protocols.devicewire import DeviceList as WireList
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.test_client import NoServer, RecordingUI, TestHome, seedIdentity

ALICE = privateKey("alice")
PHONE = privateKey("alice-phone")


def der(name):
    return publicKeyDer(privateKey(name))


class ScriptedServer:
    """
    A version-3 connection whose answers a test gives: C{answers} maps a
    request's opcode to its values (or a function of the request's values,
    or an exception); every request is recorded.
    """

    version = 3
    connected = True

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.requests = []

    def request(self, op, *values):
        self.requests.append((op,) + values)
        answer = self.answers[op]
        try:
            if callable(answer):
                answer = answer(*values)
        except Exception as e:
            return fail(e)
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)

    def sent(self, op):
        return [request[1:] for request in self.requests if request[0] == op]


def signed(devicelist, key=ALICE, keys=None):
    """
    The server's form of C{devicelist}, signed by C{key}, with the keys of
    its devices from C{keys} (id to key), by default alice's laptop and phone.
    """
    keys = keys or {"laptop": der("alice"), "phone": der("alice-phone")}
    return WireList(devicelist.text(), devicelist.sign(key),
                    tuple((device, keys[device]) for device, _ in devicelist.entries))


V1 = DeviceList.first("alice", "laptop", der("alice"))
V2 = V1.following({"phone": der("alice-phone")})


def member(name, key, wireList=NO_LIST, flags=0):
    """
    A C{devmembers} entry.
    """
    return (name, flags, key, wireList)


class RecordingConsole(Console):
    """
    A script's console on C{client} that keeps the lines it shows, in
    C{shown}.
    """

    def __init__(self, client):
        self.shown = []
        Console.__init__(self, lambda ui: client, Clock(), interactive=False, script=[])

    def show(self, text, stamp=False, timestamp=None):
        self.shown.append(text)


class DeviceClientTestCase(SynchronousTestCase):
    """
    A client on a scripted version-3 connection.
    """

    def client(self, device="laptop", server=None, home=None):
        ui = RecordingUI()
        client = ChatClient(home or TestHome(self.mktemp()), ui, NoServer(), Clock(),
                            runInThread=maybeDeferred, device=device)
        client.protocol = server or ScriptedServer()
        return client, ui

    def do(self, coroutine):
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def identityDevice(self, server=None, list_=V1):
        """
        alice's laptop, her identity device, logged in, holding C{list_}.
        """
        client, ui = self.client(server=server)
        seedIdentity(client.home, "alice")
        client.protocol.answers.update({
            Op.LOGIN: (0,),
            Op.GET_KEYS: lambda kind, name: ([member("alice", der("alice"), signed(list_))],)})
        saveDevice(client.home, "alice", ThisDevice("laptop", der("alice")))
        self.assertTrue(self.do(client.login("alice", "pw")))
        return client, ui


class RegisterTests(DeviceClientTestCase):
    """
    Registration in a device session.
    """

    def test_register(self):
        """
        REGISTER names this device, list version 1 of it alone signed by its
        key (the identity key), and a recovery blob that the code returned
        opens to that key; the device is kept as the identity device.
        """
        client, _ = self.client(device="desk")
        seedIdentity(client.home, "alice")
        client.protocol.answers[Op.REGISTER] = ()
        code = self.do(client.register("alice", "pw"))
        [(user, password, ik, device, text, signature, blob)] = client.protocol.sent(Op.REGISTER)
        self.assertEqual((user, password, ik, device), ("alice", "pw", der("alice"), "desk"))
        self.assertEqual(DeviceList.parse(text), DeviceList.first("alice", "desk", ik))
        self.assertTrue(DeviceList.parse(text).verify(ik, signature))
        key = devicecodes.openRecovery(code, "alice", blob)
        self.assertEqual(publicKeyDer(key), ik)
        self.assertEqual(loadDevice(client.home, "alice"), ThisDevice("desk", ik))
        self.assertEqual(client.entryKey(), "alice/desk")
        self.assertTrue(client.account)

    def test_registerCommandShowsTheCode(self):
        """
        /register shows the recovery code once, and a script is not kept
        waiting on it.
        """
        client, _ = self.client()
        seedIdentity(client.home, "alice")
        client.protocol.answers[Op.REGISTER] = ()
        console = RecordingConsole(client)
        shown = console.shown
        self.do(console._register("alice pw"))
        codes = [line for line in shown if line.startswith("your recovery code")]
        self.assertEqual(len(codes), 1)
        code = codes[0].rsplit(" ", 1)[1]
        [request] = client.protocol.sent(Op.REGISTER)
        self.assertEqual(publicKeyDer(devicecodes.openRecovery(code, "alice", request[6])),
                         der("alice"))


class NewDeviceTests(DeviceClientTestCase):
    """
    A new device: pending, approved with the code it shows, and nothing
    believed from the server before.
    """

    def setUp(self):
        self.phone, self.ui = self.client(device="phone")
        seedIdentity(self.phone.home, "alice", "alice-phone")
        self.phone.protocol.answers.update({Op.LOGIN: (1,), DeviceOp.REQUEST_DEVICE: ()})
        self.assertIs(self.do(self.phone.login("alice", "pw")), False)
        [(self.tag,)] = self.phone.protocol.sent(DeviceOp.REQUEST_DEVICE)
        self.secret = self.phone.pending.secret

    def test_pending(self):
        """
        LOGIN names the device and its key; the request's tag is the code's
        HMAC over this device's key; the line shown carries the code.
        """
        self.assertEqual(self.phone.protocol.sent(Op.LOGIN),
                         [("alice", "pw", "phone", der("alice-phone"))])
        self.assertTrue(devicecodes.checkTag(self.secret, "alice", der("alice-phone"), self.tag))
        line = self.phone.approveLine()
        self.assertIn("/approve %s" % (devicecodes.groupCode(self.secret),), line)
        self.assertFalse(self.phone.account)

    def reply(self, secret=None, key=ALICE, pins=None):
        verified = devicecodes.readServerList("alice", publicKeyDer(key), *signed(V2, key))
        return devicecodes.buildReply(secret or self.secret, "alice", "phone",
                                      der("alice-phone"), publicKeyDer(key), verified,
                                      pins or {"bob": der("bob")})

    def test_approved(self):
        """
        An authentic APPROVAL makes this device approved: identity key, list
        and pins adopted; what the server sent meanwhile (our rooms) is taken
        only then.
        """
        self.phone.protocol.answers[Op.GET_KEYS] = lambda kind, name: (
            [member("alice", der("alice"), signed(V2)), member("bob", der("bob"))],)
        self.phone._event(Op.JOINED, ("lobby", "alice", der("alice"), 0, signed(V2)))
        self.assertEqual(self.phone.rooms, {})
        self.phone._event(DeviceOp.APPROVAL, (self.reply(),))
        self.assertIsNone(self.phone.pending)
        self.assertTrue(self.phone.account)
        self.assertEqual(self.phone.device, ThisDevice("phone", der("alice")))
        self.assertEqual(self.phone.home.knownKeys.pinned("bob")[0], der("bob"))
        self.assertEqual(list(self.phone.rooms), ["lobby"])
        self.assertEqual(self.phone.entryKey(), "alice/phone")
        self.assertIn(("notice", "this device (phone) is approved"), self.ui.take())

    def test_forgedApproval(self):
        """
        A reply not made with this device's code (the server's own) is
        refused loudly; the device stays pending.
        """
        forged = self.reply(secret="A" * 20, key=privateKey("mallory"))
        self.phone._event(DeviceOp.APPROVAL, (forged,))
        self.assertIsNotNone(self.phone.pending)
        [(kind, text)] = self.ui.take("dropped")
        self.assertIn("does not verify", text)
        self.assertIsNone(loadDevice(self.phone.home, "alice"))


class IdentityDeviceTests(DeviceClientTestCase):
    """
    /approve, /devices and /devices remove on the identity device.
    """

    def setUp(self):
        self.laptop, self.ui = self.identityDevice()
        self.secret = devicecodes.newApprovalSecret()
        self.tag = devicecodes.approvalTag(self.secret, "alice", der("alice-phone"))
        self.pendingList = [("phone", der("alice-phone"), self.tag, 0)]
        self.laptop.protocol.answers.update({
            DeviceOp.GET_DEVICES: lambda user: (signed(V1), self.pendingList),
            DeviceOp.PUBLISH_DEVICES: (), DeviceOp.APPROVE: ()})

    def test_approve(self):
        """
        The code approves the pending key whose tag it verifies: list version
        2 with it is signed and published, and the device gets a reply that
        it can verify with its code.
        """
        device, fingerprint = self.do(self.laptop.approve(devicecodes.groupCode(self.secret)))
        self.assertEqual((device, fingerprint), ("phone", e2e.fingerprint(der("alice-phone"))))
        [(text, signature, devices)] = self.laptop.protocol.sent(DeviceOp.PUBLISH_DEVICES)
        self.assertEqual(DeviceList.parse(text), V2)
        self.assertTrue(V2.verify(der("alice"), signature))
        self.assertEqual(sorted(devices), [("laptop", der("alice")),
                                           ("phone", der("alice-phone"))])
        [(to, reply)] = self.laptop.protocol.sent(DeviceOp.APPROVE)
        # The reply first: publishing the list approves the device at once,
        # and the server relays replies to pending devices only.
        ops = [request[0] for request in self.laptop.protocol.requests]
        self.assertLess(ops.index(DeviceOp.APPROVE), ops.index(DeviceOp.PUBLISH_DEVICES))
        approval = devicecodes.openReply(self.secret, reply, "alice", "phone", der("alice-phone"))
        self.assertEqual(approval.identityKey, der("alice"))

    def test_wrongCode(self):
        """
        A code no pending request was made with approves nothing.
        """
        e = self.failureResultOf(Deferred.fromCoroutine(
            self.laptop.approve(devicecodes.newApprovalSecret())), ClientError)
        self.assertIn("no device waiting", str(e.value))
        self.assertEqual(self.laptop.protocol.sent(DeviceOp.PUBLISH_DEVICES), [])

    def test_swappedKey(self):
        """
        A pending request whose key the server swapped (the tag was made for
        another key) is not approved.
        """
        self.pendingList[:] = [("phone", der("mallory"), self.tag, 0)]
        self.failureResultOf(Deferred.fromCoroutine(
            self.laptop.approve(self.secret)), ClientError)
        self.assertEqual(self.laptop.protocol.sent(DeviceOp.PUBLISH_DEVICES), [])

    def test_devicesAndRemove(self):
        """
        /devices lists the account's verified devices, this one marked;
        /devices remove publishes the next list without the device.
        """
        self.laptop.protocol.answers[DeviceOp.GET_DEVICES] = lambda user: (signed(V2), [])
        rows, pending = self.do(self.laptop.devices())
        self.assertEqual(rows, [("laptop", e2e.fingerprint(der("alice")), True, True),
                                ("phone", e2e.fingerprint(der("alice-phone")), False, False)])
        self.do(self.laptop.removeDevice("phone"))
        [(text, signature, devices)] = self.laptop.protocol.sent(DeviceOp.PUBLISH_DEVICES)
        self.assertEqual(DeviceList.parse(text), V2.following(remove=["phone"]))
        self.assertEqual(devices, [("laptop", der("alice"))])

    def test_onlyTheIdentityDevice(self):
        """
        A device that does not hold the identity key cannot approve.
        """
        self.laptop.device = ThisDevice("phone", der("somebody"))
        self.failureResultOf(Deferred.fromCoroutine(self.laptop.approve(self.secret)),
                             ClientError)


class RoomTestCase(DeviceClientTestCase):
    """
    alice's laptop in lobby with bob (one verified device) and carol (an
    account without devices).
    """

    def setUp(self):
        self.bobList = DeviceList.first("bob", "pc", der("bob"))
        self.laptop, self.ui = self.identityDevice(list_=V2)
        self.laptop.protocol.answers[Op.GET_KEYS] = lambda kind, name: (
            [member("alice", der("alice"), signed(V2))],)
        room = self.laptop.rooms["lobby"] = Room("lobby")
        room.history = 20
        self.laptop._setMembers(room, [
            member("alice", der("alice"), signed(V2)),
            member("bob", der("bob"), signed(self.bobList, privateKey("bob"),
                                            {"pc": der("bob")})),
            member("carol", der("carol"))])
        self.laptop.active = "lobby"
        self.laptop.protocol.answers[Op.ROOM_MSG] = ()


class SealingTests(RoomTestCase):
    """
    What a device session seals to, and what it believes of what it opens.
    """

    def sentEnvelope(self):
        [(room, blob)] = self.laptop.protocol.sent(Op.ROOM_MSG)
        return e2e.Envelope.parse(blob)

    def test_everyVerifiedDevice(self):
        """
        A room message is sealed (envelope version 2) to every device of every
        member's verified list, our other devices included, and to legacy
        members by name; it signs this device, our head and the room's
        history setting.
        """
        self.do(self.laptop.send("hello"))
        envelope = self.sentEnvelope()
        self.assertEqual(envelope.version, 2)
        self.assertEqual(sorted(envelope.encryptedKeys),
                         ["alice/laptop", "alice/phone", "bob/pc", "carol"])
        self.assertEqual((envelope.device, envelope.head, envelope.hist),
                         ("laptop", tuple(V2.head), 20))
        self.assertTrue(envelope.verifySignature(der("alice")))

    def test_unverifiedDeviceGetsNoKey(self):
        """
        A device the server adds to bob's list without bob's identity key
        signing it is warned about and gets no key.
        """
        text, signature, devices = signed(self.bobList, privateKey("bob"), {"pc": der("bob")})
        self.laptop._onDevicesChanged("bob", (text, signature, devices + (("ghost", der("m")),)))
        self.assertTrue(any("ghost" in text for _, text in self.ui.take("notice")))
        self.do(self.laptop.send("hello"))
        self.assertNotIn("bob/ghost", self.sentEnvelope().encryptedKeys)

    def test_forkIsLoudAndStopsSending(self):
        """
        Another list of the version held for bob is a fork: said loudly, and
        nothing is sent while it lasts.
        """
        other = DeviceList.first("bob", "tablet", der("bob-tablet"))
        self.laptop._onDevicesChanged("bob", signed(other, privateKey("bob"),
                                                    {"tablet": der("bob-tablet")}))
        [(kind, text)] = self.ui.take("dropped")
        self.assertIn("WARNING", text)
        self.failureResultOf(Deferred.fromCoroutine(self.laptop.send("hello")), ClientError)

    def test_addedDeviceQuietNotice(self):
        """
        A new list of bob's says which device he added, quietly.
        """
        following = self.bobList.following({"phone": der("bob-phone")})
        self.laptop._onDevicesChanged("bob", signed(following, privateKey("bob"),
                                                    {"pc": der("bob"), "phone": der("bob-phone")}))
        self.assertIn(("notice", "bob added device phone"), self.ui.take())

    def test_ownMessageFromAnotherDevice(self):
        """
        What our phone sent arrives as ours, checked with the phone's key
        from our own list.
        """
        blob = e2e.seal("alice", PHONE, ("room", "lobby"),
                        {"alice/laptop": der("alice"), "alice/phone": der("alice-phone")},
                        b"from my phone", device="phone", head=tuple(V2.head), hist=20)
        self.laptop._event(Op.ROOM_MSG, ("lobby", "alice", 0, blob))
        self.assertEqual(self.ui.take("message"), [("message", "lobby", "alice", "from my phone")])

    def test_unlistedDeviceDropped(self):
        """
        A message signed by a device no verified list of its sender names is
        dropped, and said.
        """
        blob = e2e.seal("bob", privateKey("m"), ("room", "lobby"),
                        {"alice/laptop": der("alice")}, b"hi", device="ghost",
                        head=tuple(self.bobList.head), hist=20)
        self.laptop.protocol.answers[Op.GET_KEYS] = lambda kind, name: (
            [member("bob", der("bob"), signed(self.bobList, privateKey("bob"),
                                              {"pc": der("bob")}))],)
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, blob))
        events = self.ui.take("message", "dropped")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0][0], "dropped")
        self.assertIn("device ghost", events[0][1])

    def test_catchUpDeduplicated(self):
        """
        During the catch-up after a login, a message shown already is dropped
        without a word, as it is after CAUGHT_UP; another under its id is a
        replay, said, during the catch-up as after it.
        """
        def seal(text, envelopeId=None):
            return e2e.seal("bob", privateKey("bob"), ("room", "lobby"),
                            {"alice/laptop": der("alice")}, text, device="pc",
                            head=tuple(self.bobList.head), hist=20, envelopeId=envelopeId)
        blob = seal(b"once")
        other = seal(b"twice", e2e.Envelope.parse(blob).id)
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, blob))
        self.laptop.catchingUp = True
        self.ui.take()
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, blob))
        self.assertEqual(self.ui.take(), [])
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, other))
        self.assertIn("replayed", self.ui.take("dropped")[0][1])
        self.laptop._event(DeviceOp.CAUGHT_UP, (3,))
        self.assertEqual(self.ui.take(), [
            ("notice", "caught up: 3 messages arrived while this device was away")])
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, blob))
        self.assertEqual(self.ui.take(), [])
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, other))
        self.assertIn("replayed", self.ui.take("dropped")[0][1])

    def test_catchUpEarlierRun(self):
        """
        The catch-up repeats, without a word, what an earlier run of this
        device was shown (its window holds the id, not the content).
        """
        blob = e2e.seal("bob", privateKey("bob"), ("room", "lobby"),
                        {"alice/laptop": der("alice")}, b"yesterday", device="pc",
                        head=tuple(self.bobList.head), hist=20)
        envelope = e2e.Envelope.parse(blob)
        self.laptop.seenEnvelopes.remember("bob", envelope.id, envelope.ts, envelope.ts)
        self.laptop.catchingUp = True
        self.ui.take()
        self.laptop._event(Op.ROOM_MSG, ("lobby", "bob", 0, blob))
        self.assertEqual(self.ui.take(), [])

    def test_staleRecipientsWithDevices(self):
        """
        A 0x09 answer in version 3 lists members with their lists: the
        message is sealed again to the devices it names.
        """
        following = self.bobList.following({"phone": der("bob-phone")})
        members = [member("alice", der("alice"), signed(V2)),
                   member("bob", der("bob"), signed(following, privateKey("bob"),
                                                    {"pc": der("bob"),
                                                     "phone": der("bob-phone")})),
                   member("carol", der("carol"))]
        answers = [ServerError(0x09, "stale recipients", members), ()]
        self.laptop.protocol.answers[Op.ROOM_MSG] = lambda room, blob: (
            answers.pop(0) if isinstance(answers[0], tuple) else _raise(answers.pop(0)))
        self.do(self.laptop.send("hello"))
        blob = self.laptop.protocol.sent(Op.ROOM_MSG)[-1][1]
        self.assertIn("bob/phone", e2e.Envelope.parse(blob).encryptedKeys)


def _raise(e):
    raise e


class EventsWhilePendingTests(DeviceClientTestCase):
    """
    DEVICE_PENDING on the identity device.
    """

    def test_devicePendingShown(self):
        """
        A new device asking to join the account is said, with its key's
        fingerprint and what to type.
        """
        laptop, ui = self.identityDevice()
        laptop._event(DeviceOp.DEVICE_PENDING, ("phone", der("alice-phone"), b"t" * 32, 0))
        [(kind, text)] = ui.take("notice")
        self.assertIn("phone", text)
        self.assertIn("/approve CODE", text)
        self.assertIn(e2e.fingerprint(der("alice-phone")), text)




class SharingTests(RoomTestCase):
    """
    SHARE_WANTED: re-wrapping the room's latest messages for a newcomer.
    """

    def setUp(self):
        RoomTestCase.setUp(self)
        self.daveList = DeviceList.first("dave", "desk", der("dave"))
        self.daveWire = signed(self.daveList, privateKey("dave"), {"desk": der("dave")})
        self.laptop.protocol.answers[Op.GET_KEYS] = lambda kind, name: (
            [member("dave", der("dave"), self.daveWire)],)
        self.laptop.protocol.answers[DeviceOp.SHARE_HISTORY] = lambda room, user, entries: (
            len(entries),)

    def message(self, text, hist=20, to=("room", "lobby")):
        blob = e2e.seal("bob", privateKey("bob"), to, {"alice/laptop": der("alice")},
                        text, device="pc", head=tuple(self.bobList.head), hist=hist)
        return ("bob", 0, blob)

    def test_share(self):
        """
        Only messages of that room, signed with a history setting above 0,
        are shared, wrapped for the newcomer's verified devices, which open
        them.
        """
        self.laptop._event(Op.JOINED, ("lobby", "dave", der("dave"), 0, self.daveWire))
        rows = [self.message(b"kept", hist=0), self.message(b"other room", to=("room", "ops")),
                self.message(b"shared")]
        self.laptop.protocol.answers[Op.HISTORY] = lambda room, limit, before: (rows,)
        self.laptop._event(DeviceOp.SHARE_WANTED, ("lobby", "dave", 20))
        [(room, user, entries)] = self.laptop.protocol.sent(DeviceOp.SHARE_HISTORY)
        self.assertEqual((room, user, len(entries)), ("lobby", "dave", 1))
        envelope = e2e.Envelope.parse(rows[2][2])
        [(envelopeId, maps)] = entries
        self.assertEqual(envelopeId, envelope.id)
        maps = json.loads(maps)
        self.assertEqual(sorted(maps["encrypted_keys"]), ["dave/desk"])
        envelope.encryptedKeys.update(maps["encrypted_keys"])
        self.assertEqual(e2e.openEnvelope(envelope, "dave/desk", privateKey("dave"), der("bob")),
                         b"shared")

    def test_notBeyondItsHistorySetting(self):
        """
        A message is shared only among the latest as many as its signed
        history setting says.
        """
        self.laptop._event(Op.JOINED, ("lobby", "dave", der("dave"), 0, self.daveWire))
        rows = [self.message(b"old", hist=1), self.message(b"new", hist=1)]
        self.laptop.protocol.answers[Op.HISTORY] = lambda room, limit, before: (rows,)
        self.laptop._event(DeviceOp.SHARE_WANTED, ("lobby", "dave", 20))
        [(_, _, entries)] = self.laptop.protocol.sent(DeviceOp.SHARE_HISTORY)
        self.assertEqual([e[0] for e in entries], [e2e.Envelope.parse(rows[1][2]).id])

    def test_noGhost(self):
        """
        A newcomer whose join was never shown gets nothing.
        """
        self.laptop.protocol.answers[Op.HISTORY] = lambda room, limit, before: (
            [self.message(b"shared")],)
        self.laptop._event(DeviceOp.SHARE_WANTED, ("lobby", "dave", 20))
        self.assertEqual(self.laptop.protocol.sent(DeviceOp.SHARE_HISTORY), [])


class VersionThreeConnectionTests(SynchronousTestCase):
    """
    L{chatd.client.connection.ClientProtocol} in a version-3 session: its
    requests, responses and events by L{chatd.protocols.devicewire}'s
    layouts.
    """

    def setUp(self):
        self.events: list = []
        self.transport = StringTransport()
        self.protocol = ClientProtocol(Clock(), lambda op, values: self.events.append((op, values)))
        self.protocol.makeConnection(self.transport)
        self.protocol.version = 3

    def receive(self, frame):
        self.protocol.dataReceived(frame)

    def test_requestAndAnswer(self):
        """
        A version-3 request goes out in its version-3 layout, and its answer
        is read by version 3's layouts.
        """
        d = self.protocol.request(Op.LOGIN, "alice", "pw", "phone", der("alice-phone"))
        self.assertEqual(self.transport.value(),
                         devicewire.request(Op.LOGIN, "alice", "pw", "phone", der("alice-phone")))
        self.receive(devicewire.okResponse(Op.LOGIN, 1))
        self.assertEqual(self.successResultOf(d), (1,))

    def test_headConflict(self):
        """
        A PUBLISH_DEVICES refused for another head fails with that head.
        """
        d = self.protocol.request(DeviceOp.PUBLISH_DEVICES, b"t", b"s", [])
        self.receive(devicewire.headConflict(4, "ab" * 32))
        failure = self.failureResultOf(d, ServerError)
        self.assertEqual(failure.value.head, (4, "ab" * 32))

    def test_staleRecipients(self):
        """
        A 0x09 refusal in version 3 carries the members with their lists.
        """
        d = self.protocol.request(Op.ROOM_MSG, "lobby", b"{}")
        members = [member("bob", der("bob"), signed(V1))]
        self.receive(devicewire.staleResponse(members))
        failure = self.failureResultOf(d, ServerError)
        self.assertEqual(failure.value.members[0][0], "bob")
        self.assertEqual(failure.value.members[0][3].text, V1.text())

    def test_events(self):
        """
        Version 3's events are read and handed on.
        """
        self.receive(devicewire.event(DeviceOp.CAUGHT_UP, 7))
        self.receive(devicewire.event(DeviceOp.DEVICES_CHANGED, "alice", signed(V1)))
        self.assertEqual(self.events[0], (DeviceOp.CAUGHT_UP, (7,)))
        self.assertEqual(self.events[1][1][1].text, V1.text())


class RecoverTests(DeviceClientTestCase):
    """
    /recover CODE on a device waiting for approval.
    """

    def setUp(self):
        self.code = devicecodes.newRecoveryCode()
        self.blob = devicecodes.sealRecovery(self.code, "alice", ALICE)
        self.phone, self.ui = self.client(device="phone")
        seedIdentity(self.phone.home, "alice", "alice-phone")
        self.phone.protocol.answers.update({
            Op.LOGIN: (1,), DeviceOp.REQUEST_DEVICE: (),
            DeviceOp.GET_RECOVERY: (self.blob,),
            DeviceOp.GET_DEVICES: lambda user: (signed(V2), [])})
        self.dropped: list = []
        self.phone.protocol.transport = type("T", (), {
            "loseConnection": lambda _: self.dropped.append(True)})()
        self.do(self.phone.login("alice", "pw"))

    def test_recover(self):
        """
        The recovery code opens the identity key, which the account's list
        names as its identity device: this device becomes it, keeps the key
        in place of the one it made, and logs in again.
        """
        self.assertEqual(self.do(self.phone.recover(self.code)), "laptop")
        self.assertEqual(loadDevice(self.phone.home, "alice"), ThisDevice("laptop", der("alice")))
        self.assertEqual(publicKeyDer(self.phone.home.identity("alice", generate=False)),
                         der("alice"))
        self.assertEqual(self.phone.publicKey, der("alice"))
        self.assertTrue(self.phone.account)
        self.assertEqual(self.dropped, [True])

    def test_wrongCode(self):
        """
        Another code opens nothing, and changes nothing.
        """
        e = self.failureResultOf(Deferred.fromCoroutine(
            self.phone.recover(devicecodes.newRecoveryCode())), ClientError)
        self.assertIn("does not open", str(e.value))
        self.assertIsNotNone(self.phone.pending)
        self.assertEqual(publicKeyDer(self.phone.home.identity("alice", generate=False)),
                         der("alice-phone"))


class DirectHistoryTests(RoomTestCase):
    """
    /history @USER: the stored direct messages between us and USER.
    """

    def test_directHistory(self):
        """
        Direct messages between us and bob are opened; one between others,
        or a room's, is shown as not in its place.
        """
        def dm(sender, key, device, to, text):
            return (sender, 0, e2e.seal(sender, key, to, {"alice/laptop": der("alice")}, text,
                                        device=device, head=None if device == "" else
                                        tuple(self.bobList.head), hist=0))
        rows = [dm("bob", privateKey("bob"), "pc", ("user", "alice"), b"to you"),
                dm("bob", privateKey("bob"), "pc", ("user", "carol"), b"to carol"),
                dm("bob", privateKey("bob"), "pc", ("room", "lobby"), b"a room's")]
        self.laptop.protocol.answers[Op.HISTORY] = lambda room, limit, before: (rows,)
        name, shown = self.do(self.laptop.history("@bob"))
        self.assertEqual(name, "@bob")
        self.assertEqual(self.laptop.protocol.sent(Op.HISTORY), [("@bob", 0, 0)])
        self.assertEqual(shown[0][2], "to you")
        self.assertEqual([row[2] for row in shown[1:]], [None, None])
        self.assertIn("place", shown[1][3])


class SharedHistoryTests(RoomTestCase):
    """
    History shared with this device as a newcomer: entries another member's
    device re-wrapped for it after the message was sent. The server adds
    them to the stored message, outside what the sender signed, so only the
    key commitment tells a wrong key from the right one.
    """

    def shared(self, key):
        """
        A message bob sealed for his own device alone, with an entry for
        alice/laptop added afterwards wrapping C{key}.
        """
        blob = e2e.seal("bob", privateKey("bob"), ("room", "lobby"), {"bob/pc": der("bob")},
                        b"said before you came", device="pc",
                        head=tuple(self.bobList.head), hist=20)
        envelope = json.loads(blob)
        wrapped = e2e.loadPublicKey(der("alice")).encrypt(key, e2e._OAEP)
        envelope["encrypted_keys"]["alice/laptop"] = base64.b64encode(wrapped).decode("ascii")
        envelope["key_ids"]["alice/laptop"] = e2e.keyId(der("alice"))
        return ("bob", 0, json.dumps(envelope).encode("utf-8"))

    def test_wrongKeyRefused(self):
        """
        A re-wrap of a key other than the message's is refused by the key
        commitment: the row is shown as not opening, never as text.
        """
        self.laptop.protocol.answers[Op.HISTORY] = lambda room, limit, before: (
            [self.shared(os.urandom(32))],)
        _, shown = self.do(self.laptop.history("lobby"))
        [row] = shown
        self.assertIsNone(row[2])
        self.assertIn("commitment", row[3])


class CommandTests(DeviceClientTestCase):
    """
    The console's device commands.
    """

    def test_devicesAndApprove(self):
        """
        /devices lists the devices, marked; /approve says which device it
        approved.
        """
        laptop, _ = self.identityDevice()
        secret = devicecodes.newApprovalSecret()
        tag = devicecodes.approvalTag(secret, "alice", der("alice-phone"))
        laptop.protocol.answers.update({
            DeviceOp.GET_DEVICES: lambda user: (signed(V1), [("phone", der("alice-phone"),
                                                              tag, 0)]),
            DeviceOp.PUBLISH_DEVICES: (), DeviceOp.APPROVE: ()})
        console = RecordingConsole(laptop)
        shown = console.shown
        self.do(console._run("/devices"))
        self.assertEqual(shown[0], "devices of alice (1):")
        self.assertIn("[this device, identity]", shown[1])
        self.assertIn("waiting for approval", shown[2])
        self.do(console._run("/approve %s" % (devicecodes.groupCode(secret).lower(),)))
        self.assertIn("approved device phone", shown[-1])
