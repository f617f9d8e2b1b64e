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
"""

from typing import Any, Awaitable, Callable, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from chatd.client.connection import ServerError

UNAVAILABLE = 0x0A
REPLAYED = 0x07

# The pauses before each resend: 3 resends, 7 s in all, the browser's too
# (docs/client.rst).
RESEND_PAUSES: Tuple[float, ...] = (1.0, 2.0, 4.0)


async def sendUntilStored(call: Callable[[], Awaitable[Any]], clock: IReactorTime,
                          resending: Callable[[float], None]) -> Optional[Any]:
    """
    Make C{call} (the request carrying one envelope) until the server stores
    what it carries, resending it after each 0x0a refusal, up to
    L{RESEND_PAUSES}.

    @param resending: called with the first pause, once, when the first
        refusal comes: to tell the person.
    @return: what C{call} gave; L{None} when a resend was refused as a replay
        of the one stored after all.
    @raise ServerError: any other refusal, or the last 0x0a one, which then
        says how many times the message was sent.
    """
    pauses = iter(RESEND_PAUSES)
    resent = False
    while True:
        try:
            return await call()
        except ServerError as e:
            if resent and e.status == REPLAYED:
                return None
            if e.status != UNAVAILABLE:
                raise
            pause = next(pauses, None)
            if pause is None:
                raise ServerError(e.status, "not sent: the server refused it %d times "
                                  "(%s)" % (len(RESEND_PAUSES) + 1, e.message)) from e
        if not resent:
            resending(pause)
            resent = True
        await deferLater(clock, pause, lambda: None)
