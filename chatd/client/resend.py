# -*- test-case-name: chatd.test.test_client_resend -*-
"""
Sending a message the server could not store again, as it is.

A refusal with 0x0a (unavailable) means the message was most likely not
stored, although the members may have received it already: a server on
SQLite delivers while the commit runs (docs/protocol.rst, "What an
acknowledgement promises"). So the client sends the very same envelope again
after a pause, never one sealed anew, whose new id the members could not
recognise: those that have it drop the identical repeat without a word
(L{chatd.client.replay}). A resend refused with 0x07 (replayed id) tells that
the one refused before was stored after all: the message is sent.

No answer at all (the connection lost before it came) means the same: the
message may have been stored, or not. The client reconnects by itself, so the
same envelope goes again, once connected (L{chatd.client.reconnect}).
"""

from typing import Any, Awaitable, Callable, Optional, Tuple

from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from chatd.client.connection import ServerError
from chatd.client.errors import ClientError

UNAVAILABLE = 0x0A
REPLAYED = 0x07

# The pauses before each resend: 3 resends, 7 s in all, the browser's too
# (docs/client.rst).
RESEND_PAUSES: Tuple[float, ...] = (1.0, 2.0, 4.0)


async def sendUntilStored(call: Callable[[], Awaitable[Any]], clock: IReactorTime,
                          resending: Callable[[float, bool], None]) -> Optional[Any]:
    """
    Make C{call} (the request carrying one envelope) until the server stores
    what it carries, resending it after each 0x0a refusal or lost connection,
    up to L{RESEND_PAUSES}.

    @param resending: called once, when the first refusal or loss comes, with
        the first pause and whether the connection was lost: to tell the
        person.
    @return: what C{call} gave; L{None} when a resend was refused as a replay
        of the one stored after all.
    @raise ServerError: any other refusal, or the last 0x0a one, which then
        says how many times the message was sent.
    @raise ClientError: when the last try too lost its connection, or no
        connection came back after a loss.
    """
    pauses = iter(RESEND_PAUSES)
    resent = lost = False
    while True:
        try:
            return await call()
        except ClientError as e:
            # No connection came back for the resend: still unknown.
            if not lost:
                raise
            raise ClientError("perhaps not sent: the connection was lost before the server "
                              "answered, and then %s" % (e,)) from e
        except ServerError as e:
            if resent and e.status == REPLAYED:
                return None
            if e.status != UNAVAILABLE:
                raise
            lost = False
            pause = next(pauses, None)
            if pause is None:
                raise ServerError(e.status, "not sent: the server refused it %d times "
                                  "(%s)" % (len(RESEND_PAUSES) + 1, e.message)) from e
        except ConnectionClosed as e:
            lost = True
            pause = next(pauses, None)
            if pause is None:
                raise ClientError("perhaps not sent: the connection was lost before the "
                                  "server answered, %d times" % (len(RESEND_PAUSES) + 1,)) from e
        if not resent:
            resending(pause, lost)
            resent = True
        await deferLater(clock, pause, lambda: None)
