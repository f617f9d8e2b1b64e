# -*- test-case-name: chatd.test.test_registration -*-
"""
Tests for C{--registration} and server-wide bans (L{chatd.registration}) on
every door: binary, text and WebSocket.
"""

import base64
from dataclasses import replace

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd.errors import Status
from chatd.protocols import jsonwire, layouts, opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.registration import parseRegistration
from chatd.test.fakes import makeService, publicDer
from chatd.test.test_binary import Wire
from chatd.test.test_text import LineClient
from chatd.test.test_websocket import connectWebSocket

PASSWORD = "correct-horse"
CLOSED = (Status.FORBIDDEN,
          "registration is closed: ask the server's operator for an account")
NEEDED = (Status.FORBIDDEN,
          "registration needs an invite: ask the server's operator for one")
UNUSABLE = (Status.FORBIDDEN, "that invite is unknown, used up or expired")
BANNED = (Status.FORBIDDEN, "this account is banned from this server")
OK = (Status.OK, None)
WS_CODES = {"forbidden": Status.FORBIDDEN, "bad_request": Status.ERROR}


class Doors:
    """
    Register and log in on each door, with every answer as C{(status,
    message)}: L{Status.OK} and L{None} when it succeeded.
    """

    def __init__(self, service, reactor):
        self.service = service
        self.reactor = reactor

    def binary(self, name, invite=None, login=False):
        wire = Wire(BinaryFactory(self.service))
        wire.hello()
        if login:
            status, values = wire.request(Op.LOGIN, name, PASSWORD)
        else:
            extra = layouts.encode(("str8",), (invite,)) if invite is not None else b""
            wire.sendRaw(opcodes.frame(Op.REGISTER, layouts.encode(
                opcodes.REQUESTS[Op.REGISTER], (name, PASSWORD, publicDer(name))) + extra))
            [(status, values)] = wire.responses(Op.REGISTER)
        return Status(status), (values[0] if status else None)

    def text(self, name, invite=None, login=False):
        client = LineClient(TextFactory(self.service))
        if login:
            line = "CMD::/login %s %s" % (name, PASSWORD)
        else:
            key = base64.b64encode(publicDer(name)).decode()
            line = "CMD::/register %s %s %s" % (name, PASSWORD, key)
            if invite is not None:
                line += " " + invite
        reply = client.request(line)
        if reply.startswith(b"OK::"):
            return OK
        _, code, message = reply.decode().split("::", 2)
        return Status(int(code, 16)), message

    def web(self, name, invite=None, login=False):
        client = connectWebSocket(Site(makeWebResource(self.service), reactor=self.reactor))
        if login:
            response = client.request("login", userId=name, password=PASSWORD)
        else:
            fields = {"invite": invite} if invite is not None else {}
            response = client.request("register", userId=name, password=PASSWORD,
                                      publicKey=jsonwire.derToPem(publicDer(name)), **fields)
        if response["type"] != "error":
            return OK
        return WS_CODES[response["code"]], response["message"]

    def all(self):
        return [("binary", self.binary), ("text", self.text), ("web", self.web)]


class RegistrationTestCase(SynchronousTestCase):
    def serve(self, mode):
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.service = makeService(clock=self.reactor, registration=mode)
        self.doors = Doors(self.service, self.reactor)

    def invite(self, token, uses=1, expiresMs=None):
        self.successResultOf(self.service.store.createInvite(token, uses, expiresMs))


class ModeTests(RegistrationTestCase):
    """
    Each registration mode holds on every door.
    """

    def test_parse(self):
        """
        The three modes parse, in any case; anything else is refused.
        """
        self.assertEqual([parseRegistration(m) for m in ("open", "INVITE", " closed ")],
                         ["open", "invite", "closed"])
        self.assertRaises(ValueError, parseRegistration, "invites")

    def test_open(self):
        """
        By default anyone registers on every door, with or without a token.
        """
        self.serve("open")
        for door, register in self.doors.all():
            self.assertEqual(register(door + "1"), OK, door)
            self.assertEqual(register(door + "2", invite="whatever"), OK, door)

    def test_closed(self):
        """
        C{closed} refuses every registration on every door with 0x05, a token
        or not, and stores no account.
        """
        self.serve("closed")
        self.invite("tok")
        for door, register in self.doors.all():
            self.assertEqual(register(door), CLOSED, door)
            self.assertEqual(register(door, invite="tok"), CLOSED, door)
            self.assertIsNone(self.successResultOf(self.service.store.getAccount(door)))

    def test_inviteNeeded(self):
        """
        C{invite} refuses a registration without a token, or with one not
        made, on every door.
        """
        self.serve("invite")
        for door, register in self.doors.all():
            self.assertEqual(register(door), NEEDED, door)
            self.assertEqual(register(door, invite="forged"), UNUSABLE, door)
            self.assertIsNone(self.successResultOf(self.service.store.getAccount(door)))

    def test_inviteSingleUse(self):
        """
        A single-use token admits one registration, on any door, and then no
        other on any door.
        """
        self.serve("invite")
        for door, register in self.doors.all():
            self.invite("tok-" + door)
            self.assertEqual(register(door, invite="tok-" + door), OK, door)
            for other, again in self.doors.all():
                self.assertEqual(again(other + "-again", invite="tok-" + door), UNUSABLE)

    def test_inviteUses(self):
        """
        A token made for three uses admits three registrations, one per door,
        and refuses the fourth.
        """
        self.serve("invite")
        self.invite("three", uses=3)
        for door, register in self.doors.all():
            self.assertEqual(register(door, invite="three"), OK, door)
        self.assertEqual(self.doors.binary("fourth", invite="three"), UNUSABLE)

    def test_inviteExpires(self):
        """
        A token that expires admits no registration from its expiry on.
        """
        self.serve("invite")
        self.invite("soon", uses=5, expiresMs=int(self.reactor.seconds() * 1000) + 60000)
        self.assertEqual(self.doors.text("early", invite="soon"), OK)
        self.reactor.advance(60)
        self.assertEqual(self.doors.web("late", invite="soon"), UNUSABLE)

    def test_emptyBinaryInvite(self):
        """
        On the binary door an invite field sent empty is a malformed frame
        (0x01): a client without a token leaves the field out.
        """
        self.serve("invite")
        status, message = self.doors.binary("alice", invite="")
        self.assertEqual(status, Status.ERROR)


class BanTests(RegistrationTestCase):
    """
    A banned account cannot log in on any door, by password or by signature.
    """

    def setUp(self):
        self.serve("open")
        self.assertEqual(self.doors.binary("alice"), OK)
        store = self.service.store
        account = self.successResultOf(store.getAccount("alice"))
        store._accounts["alice"] = replace(account, banned=True)

    def test_password(self):
        """
        LOGIN with the right password is refused on every door with 0x05.
        """
        for door, login in self.doors.all():
            self.assertEqual(login("alice", login=True), BANNED, door)

    def test_signature(self):
        """
        AUTH with a good signature over the challenge is refused too.
        """
        from chatd import loginsig
        from chatd.test.fakes import privateKey
        wire = Wire(BinaryFactory(self.service))
        wire.hello()
        status, (challenge,) = wire.request(Op.CHALLENGE)
        signature = loginsig.signAuth(privateKey("alice"), challenge, "alice")
        status, values = wire.request(Op.AUTH, "alice", signature)
        self.assertEqual((status, values[0]), BANNED)
