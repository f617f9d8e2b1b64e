"""
Tests for L{chatd.protocols.door}, the skeleton every door shares, and
L{chatd.protocols.requests}, the one table of requests the doors make.
"""

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatd.core.session import Session
from chatd.errors import ChatError, NotFound
from chatd.interfaces import IChatService
from chatd.isession import ISession
from chatd.protocols import binary, door, text, websocket
from chatd.protocols.devicedoor import REQUESTS_V3
from chatd.protocols.door import Door, Final
from chatd.protocols.requests import REQUESTS


class FakeSession:
    """
    A session whose every request is recorded as C{(method, args)} and
    answered by a L{Deferred} the test fires.

    @ivar overlapping: the overlap rule, as the core declares it.
    """

    name = "alice"

    def __init__(self, overlapping):
        self.overlapping = overlapping
        self.calls = []
        self.results = []
        self.ended = False

    def received(self):
        pass

    def closed(self):
        self.ended = True

    def __getattr__(self, method):
        def request(*args):
            self.calls.append((method, args))
            result: Deferred = Deferred()
            self.results.append(result)
            return result
        return request


@implementer(IChatService)
class FakeService:
    """
    What a door needs of the core: settings, metrics and C{connect}.
    """

    def __init__(self, overlapping=frozenset({"roomMessage"}), refuse=None):
        self.settings = SimpleNamespace(sendQueue=1 << 20, sendBudget=1 << 30)
        self.refusals: list = []
        self.metrics = SimpleNamespace(
            refused=lambda door, status: self.refusals.append((door, status)))
        self.session = FakeSession(overlapping)
        self.refuse = refuse

    def connect(self, client, address):
        if self.refuse is not None:
            raise self.refuse
        return self.session


class LineDoor(Door, LineReceiver):
    """
    A door of lines C{REQUEST ARG...}, answered C{ok VALUE} or C{err STATUS
    MESSAGE}; C{exit} is answered and closes.
    """

    delimiter = b"\n"
    door = "lines"

    def connectionMade(self):
        self.open(self.transport, "10.0.0.1")

    def connectionLost(self, reason=connectionDone):
        self.lost()

    def _encodeRefusal(self, error, context):
        return b"err %d %s\n" % (error.status, error.message.encode())

    def lineReceived(self, line):
        request, *args = line.decode().split()
        if request == "exit":
            self.submit("exit", lambda: Final(b"bye\n"))
        elif request == "crash":
            self.submit("crash", lambda: 1 / 0)
        elif request not in REQUESTS:
            self.refuseInTurn(ChatError("unknown " + request))
        else:
            self.submit(request, lambda: self.call(request, *args).addCallback(
                lambda value: b"ok %s\n" % (value.encode(),)))

    def warning(self, code, message):
        self._send(b"warning %d\n" % (code,))


class PipelineTests(SynchronousTestCase):
    """
    The request pipeline: one answer per request, in order, overlapping only
    what the core says may overlap.
    """

    def connect(self, **kwargs):
        self.service = FakeService(**kwargs)
        self.door = LineDoor(self.service)
        self.transport = StringTransport()
        self.door.makeConnection(self.transport)
        return self.service.session

    def written(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def test_overlappingAnswerInOrder(self):
        """
        Requests the session declares overlapping all start at once; their
        answers still come in request order, whichever finishes first.
        """
        session = self.connect()
        self.door.dataReceived(b"room_message a\nroom_message b\n")
        self.assertEqual(session.calls, [("roomMessage", ("a",)), ("roomMessage", ("b",))])
        self.assertEqual(self.transport.producerState, "producing")
        session.results[1].callback("2")
        self.assertEqual(self.written(), b"")
        session.results[0].callback("1")
        self.assertEqual(self.written(), b"ok 1\nok 2\n")

    def test_orderedWaitsAndStopsReading(self):
        """
        A request the session does not declare overlapping waits for the
        messages before it, and reading stops until it is answered.
        """
        session = self.connect()
        self.door.dataReceived(b"room_message a\nhistory r\nroom_message b\n")
        self.assertEqual(session.calls, [("roomMessage", ("a",))])
        self.assertEqual(self.transport.producerState, "paused")
        session.results[0].callback("1")
        self.assertEqual(session.calls[1:], [("history", ("r",))])
        session.results[1].callback("h")
        self.assertEqual(session.calls[2:], [("roomMessage", ("b",))])
        session.results[2].callback("2")
        self.assertEqual(self.written(), b"ok 1\nok h\nok 2\n")
        self.assertEqual(self.transport.producerState, "producing")

    def test_overlapIsTheCores(self):
        """
        The overlap rule is read from the session: with none declared, even
        messages wait for each other.
        """
        session = self.connect(overlapping=frozenset())
        self.door.dataReceived(b"room_message a\nroom_message b\n")
        self.assertEqual(session.calls, [("roomMessage", ("a",))])

    def test_overlapCapped(self):
        """
        At most C{maxOverlapping} overlapping requests wait at once; past it,
        the door stops reading.
        """
        session = self.connect()
        self.door.maxOverlapping = 2
        self.door.dataReceived(b"room_message a\nroom_message b\nroom_message c\n")
        self.assertEqual(len(session.calls), 2)
        self.assertEqual(self.transport.producerState, "paused")
        session.results[0].callback("1")
        self.assertEqual(len(session.calls), 3)

    def test_refusalsInTurn(self):
        """
        A refusal of input that is no request is its answer, in order, and
        counted; a request's L{ChatError} is refused with its status.
        """
        session = self.connect()
        self.door.dataReceived(b"room_message a\nbogus\njoin r\n")
        session.results[0].callback("1")
        session.results[1].errback(NotFound("no such room: r"))
        self.assertEqual(self.written(), b"ok 1\nerr 1 unknown bogus\nerr 6 no such room: r\n")
        self.assertEqual(self.service.refusals, [("lines", 1), ("lines", 6)])

    def test_unexpectedError(self):
        """
        An unexpected exception is logged and refused as an internal error.
        """
        self.connect()
        self.door.dataReceived(b"crash\n")
        self.assertEqual(self.written(), b"err 1 internal error\n")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_finalCloses(self):
        """
        A L{Final} answer is written and then the connection closes; nothing
        after it is read.
        """
        session = self.connect()
        self.door.dataReceived(b"exit\nlist_rooms\n")
        self.assertEqual(self.written(), b"bye\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertEqual(session.calls, [])

    def test_goAway(self):
        """
        On L{Door.goAway} the warning goes out, requests not started are
        dropped, and the connection closes once those in progress are answered.
        """
        session = self.connect(overlapping=frozenset())
        self.door.dataReceived(b"join r\n")
        self.door.lineReceived(b"list_rooms")
        self.door.goAway(6, "stopping")
        self.assertFalse(self.transport.disconnecting)
        session.results[0].callback("joined")
        self.assertEqual(self.written(), b"warning 6\nok joined\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(session.calls, [("join", ("r",))])

    def test_refusedConnection(self):
        """
        A connection the core refuses is told why and closed.
        """
        self.service = FakeService(refuse=ChatError("too many"))
        self.door = LineDoor(self.service)
        self.transport = StringTransport()
        self.door.makeConnection(self.transport)
        self.assertEqual(self.written(), b"err 1 too many\n")
        self.assertTrue(self.transport.disconnecting)

    def test_lostEndsSession(self):
        """
        Losing the connection closes the session and drops what waits to be
        sent.
        """
        session = self.connect()
        self.door.connectionLost(None)
        self.assertTrue(session.ended)
        self.assertIsNone(self.door.session)


class RequestTableTests(SynchronousTestCase):
    """
    One table names the core's requests; every door maps its words into it.
    """

    def test_everyRequestIsASessionMethod(self):
        """
        Each request of L{REQUESTS} is carried out by a method of the core's
        session, and what the core declares overlapping is among them.
        """
        for request, method in REQUESTS.items():
            self.assertTrue(inspect.isfunction(getattr(Session, method, None)), request)
        self.assertLessEqual(Session.overlapping, set(REQUESTS.values()))

    def test_doorsMapIntoTheTable(self):
        """
        The binary door reaches every request (those of devices in version
        3); the text and WebSocket doors
        map their commands and messages only to requests of the table (HELLO
        they make themselves on connecting).
        """
        self.assertEqual(set(binary._REQUEST_OF.values()) | set(REQUESTS_V3.values()),
                         set(REQUESTS))
        for table in (text._REQUEST_OF, websocket._REQUEST_OF):
            self.assertLessEqual(set(table.values()), set(REQUESTS) - {"hello"})


class SeamTests(SynchronousTestCase):
    """
    The doors talk to the core through the session only.
    """

    def test_onlyTheInterface(self):
        """
        Everything a door reads or calls on its session is declared by
        L{ISession}.
        """
        used = set()
        for path in Path(door.__file__).parent.glob("*.py"):
            used.update(re.findall(r"\bsession\.([A-Za-z_]+)", path.read_text()))
        self.assertLessEqual(used, set(ISession.names()))

    def test_noCoreDictionaries(self):
        """
        No door module reads the core's users, rooms or a user's rooms, nor
        the session's user object.
        """
        forbidden = re.compile(r"service\.(users|rooms|room\()|\.user\.rooms|session\.user\b")
        here = Path(door.__file__).parent
        for path in sorted(here.glob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                self.assertIsNone(forbidden.search(line), "%s:%d: %s" % (path.name, number, line))
