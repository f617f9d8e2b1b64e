# -*- test-case-name: chatd.test.test_door,chatd.test.test_binary,chatd.test.test_text,chatd.test.test_websocket -*-  # noqa: E501
"""
What every front door does the same way, whatever its wire format.

A door (L{chatd.protocols.binary}, L{chatd.protocols.text},
L{chatd.protocols.websocket}) parses, calls the core and encodes; this base holds
the rest, so that the three behave alike:

  - B{lifecycle}: the outbox (L{chatd.protocols.outbox}) is registered as the
    connection's producer, the session is made by the core (or the connection
    refused with the core's reason), and told when the connection is gone;
  - B{output}: every frame goes through the outbox, bounded by C{send-queue}
    and the shared C{send-budget}; a reader that does not read is aborted;
    closing hands over what is queued first;
  - B{refusals}: a L{ChatError} becomes the door's refusal with its status, an
    unexpected exception is logged and refused as an internal error, and every
    refusal is counted;
  - B{the request pipeline}: each request gets exactly one answer, in request
    order. Requests the core declares overlapping (L{Session.overlapping}) may
    wait on their asynchronous work together, up to L{Door.maxOverlapping} at
    once; any other request waits for every request before it and holds up
    those after it. While requests wait, the door stops reading, so that a
    client that pipelines cannot make the server buffer without bound.

A door provides the wire-specific hooks (L{Door._encodeRefusal}, and, when its
transport is not a stream, L{Door._produce}, L{Door._pauseReading},
L{Door._resumeReading}, L{Door._hangUp} and L{Door._abort}) and feeds each parsed
request to L{Door.submit}.
"""

from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.errors import BadRequest, ChatError
from chatd.interfaces import IChatService
from chatd.isession import ISession
from chatd.protocols.outbox import Outbox, budgetOf
from chatd.protocols.requests import REQUESTS

log = Logger()

# The context of a refusal that answers no particular request.
NO_CONTEXT = object()


class Final:
    """
    An answer after which the connection closes (C{/exit}, a LEAVE of nothing,
    a frame that makes the stream untrustworthy).
    """

    def __init__(self, frame: Any) -> None:
        self.frame = frame


class _Answer:
    """
    The answer to one request, in its place in the order of answers.

    @ivar frame: what to send, once ready.
    @ivar waitingAs: C{"ordered"} or C{"overlapping"} while the request's work
        runs, L{None} once the answer is ready.
    """

    __slots__ = ("frame", "waitingAs")

    def __init__(self, frame=None, waitingAs=None):
        self.frame = frame
        self.waitingAs = waitingAs


class Door:
    """
    The shared part of one connection of a door.

    @cvar door: the door's name in metrics and logs.
    @cvar malformed: exception types (besides L{ChatError}) that mean the
        client's input was malformed: refused with their message, not logged.
    @cvar maxOverlapping: how many overlapping requests may wait at once
        before the door stops reading.
    @ivar session: the core's session, once connected and until the connection
        is gone.
    """

    door = "other"
    malformed: Tuple[type, ...] = ()
    maxOverlapping = 64

    if TYPE_CHECKING:
        # What the protocol a door is mixed into provides (the default hooks
        # use them), and the IChatClient method every door has.
        transport: Any

        def pauseProducing(self) -> None: ...
        def resumeProducing(self) -> None: ...
        def warning(self, code: int, message: str) -> None: ...

    def __init__(self, service: IChatService) -> None:
        self.service = service
        self.session: Optional[ISession] = None
        self.outbox: Optional[Outbox] = None
        self._closing = False
        self._leaving: Optional[str] = None
        self._answers: Deque[_Answer] = deque()
        self._waiting: Deque[Tuple[Optional[str], Callable[[], Any], object]] = deque()
        self._pending = {"ordered": 0, "overlapping": 0}
        self._advancing = False
        self._readingPaused = False

    @property
    def _live(self) -> ISession:
        """
        The session, where the door acts only while it has one: answering a
        request, telling an event.
        """
        session = self.session
        assert session is not None, "no session: the connection is not open"
        return session

    # -- lifecycle --------------------------------------------------------

    def open(self, sink: Any, address: str) -> bool:
        """
        The connection is up: start its outbox over C{sink} and connect to the
        core. A connection the core refuses is told why and closed.

        @return: whether the core took the connection.
        """
        self.outbox = Outbox(sink, self.service.settings.sendQueue, self._sendQExceeded,
                             budgetOf(self.service))
        self._produce(self.outbox)
        try:
            self.session = self.service.connect(self, address)
        except ChatError as e:
            self._send(self._refusal(e, NO_CONTEXT))
            self._closeRefused()
            return False
        return True

    def lost(self) -> None:
        """
        The connection is gone: the session ends and nothing more is sent.
        """
        session, self.session = self.session, None
        self._closing = True
        if session is not None:
            session.closed()
        if self.outbox is not None:
            self.outbox.stopProducing()

    def received(self) -> None:
        """
        Bytes came from the client: the session's idle clock starts again.
        """
        if self.session is not None:
            self.session.received()

    # -- output -----------------------------------------------------------

    def _send(self, frame):
        if not self._closing:
            assert self.outbox is not None, "a frame before the connection opened"
            self.outbox.write(frame)

    def _closeAfterWriting(self, *how):
        """
        Close once what is queued has been handed to the transport; C{how} is
        passed on to L{_hangUp}. Only once: input that arrives after the close
        started must not unregister the outbox again.

        The outbox stays the producer until the transport has taken all of it
        (more than the transport's own buffer may be waiting), and is
        unregistered before hanging up: a TLS transport does not start its
        shutdown while a producer is registered, so the connection would
        otherwise stay open until the client hung up.
        """
        if self._closing:
            return
        self._closing = True
        assert self.outbox is not None, "closing before the connection opened"
        self.outbox.handOver(lambda: self._hangUp(*how))

    def _sendQExceeded(self):
        log.warn("send queue exceeded for {name}; aborting the connection",
                 name=self.session and self.session.name)
        self._closing = True
        self._abort()

    def _refusal(self, error, context):
        """
        The door's refusal of a request for C{error}, counted.
        """
        self.service.metrics.refused(self.door, error.status)
        return self._encodeRefusal(error, context)

    def _refuse(self, error, context=NO_CONTEXT):
        """
        Send a refusal outside the order of answers (for what is not a request).
        """
        self._send(self._refusal(error, context))

    def _errorOf(self, failure):
        """
        The L{ChatError} a failed request is refused with.
        """
        if failure.check(ChatError):
            return failure.value
        if self.malformed and failure.check(*self.malformed):
            return BadRequest(failure.getErrorMessage())
        log.failure("handling a request on the {door} door", failure, door=self.door)
        return BadRequest("internal error")

    # -- the request pipeline ---------------------------------------------

    def call(self, request: str, *args: Any, **kwargs: Any) -> Any:
        """
        Make request C{request} (a name of L{REQUESTS}) of the session.

        @return: what the session's method returns: a value or a L{Deferred}.
        """
        return getattr(self.session, REQUESTS[request])(*args, **kwargs)

    def submit(self, request: Optional[str], handle: Callable[[], Any],
               context: object = NO_CONTEXT) -> None:
        """
        Take one request in its turn.

        @param request: its name in L{REQUESTS}, the door's own name for a
            request only it has, or L{None} for input refused before it is any
            request (which changes nothing, so it never waits).
        @param handle: called without arguments when the request's turn comes;
            returns the answer (a frame, or a L{Final}), or a L{Deferred} of it,
            or raises; a L{ChatError} is refused.
        @param context: passed to L{_encodeRefusal} with a refusal (a request
            id, for the WebSocket door).
        """
        if self._closing or self._leaving is not None:
            return
        self._waiting.append((request, handle, context))
        self._advance()

    def refuseInTurn(self, error: ChatError, context: object = NO_CONTEXT,
                     final: bool = False) -> None:
        """
        Refuse input that is no request (malformed, unknown) in its turn: its
        refusal is its answer, in order; with C{final}, the connection then
        closes.
        """
        if final:
            self.submit(None, lambda: Final(self._refusal(error, context)))
        else:
            self.submit(None, lambda: self._refusal(error, context))

    def _overlaps(self, request):
        overlapping = self.session.overlapping if self.session is not None else ()
        return REQUESTS.get(request) in overlapping

    def _mayStart(self, request):
        if request is None:
            return True
        if self._pending["ordered"]:
            return False
        if self._overlaps(request):
            return self._pending["overlapping"] < self.maxOverlapping
        return not self._pending["overlapping"]

    def _advance(self):
        """
        Start every waiting request whose turn has come, send every answer
        that is ready in order, and read only while nothing waits.

        A request answered at once comes back here from within the loop, which
        is why it is not re-entered: a long run of them then costs no stack.
        """
        if self._advancing:
            return
        self._advancing = True
        try:
            while not self._closing:
                self._flush()
                if not (self._waiting and self._mayStart(self._waiting[0][0])):
                    break
                self._start(*self._waiting.popleft())
        finally:
            self._advancing = False
        if self._closing:
            return
        if self._leaving is not None and not self._answers:
            self._closeGoingAway(self._leaving)
            return
        blocked = bool(self._waiting or self._pending["ordered"]
                       or self._pending["overlapping"] >= self.maxOverlapping)
        if blocked != self._readingPaused:
            self._readingPaused = blocked
            if blocked:
                self._pauseReading()
            else:
                self._resumeReading()

    def _start(self, request, handle, context):
        try:
            result = handle()
        except Exception:
            result = Failure()
        answer = _Answer()
        self._answers.append(answer)
        if isinstance(result, Deferred):
            answer.waitingAs = "overlapping" if self._overlaps(request) else "ordered"
            self._pending[answer.waitingAs] += 1
            result.addBoth(self._ready, answer, context)
        else:
            answer.frame = self._answerOf(result, context)

    def _answerOf(self, result, context):
        if isinstance(result, Failure):
            return self._refusal(self._errorOf(result), context)
        return result

    def _ready(self, result, answer, context):
        self._pending[answer.waitingAs] -= 1
        answer.frame, answer.waitingAs = self._answerOf(result, context), None
        self._advance()

    def _flush(self):
        while self._answers and self._answers[0].waitingAs is None and not self._closing:
            frame = self._answers.popleft().frame
            if isinstance(frame, Final):
                self._send(frame.frame)
                self._closeAfterWriting()
            elif frame is not None:
                self._send(frame)

    # -- IChatClient ------------------------------------------------------

    def disconnect(self) -> None:
        self._closeAfterWriting()

    def goAway(self, code: int, message: str) -> None:
        """
        Send the warning, drop the requests not yet started, and close once
        the ones in progress are answered.
        """
        self.warning(code, message)
        self._leaving = message
        self._waiting.clear()
        self._advance()

    # -- hooks: a stream transport's, unless the door says otherwise --------

    def _encodeRefusal(self, error, context):
        """
        The door's wire form of a refusal.
        """
        raise NotImplementedError()

    def _produce(self, outbox):
        self.transport.registerProducer(outbox, True)

    def _pauseReading(self):
        self.pauseProducing()

    def _resumeReading(self):
        self.resumeProducing()

    def _hangUp(self):
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def _abort(self):
        self.transport.abortConnection()

    def _closeRefused(self):
        """
        Close a connection the core refused, once told why.
        """
        self._closeAfterWriting()

    def _closeGoingAway(self, message):
        """
        Close after L{goAway}, every request in progress answered.
        """
        self._closeAfterWriting()
