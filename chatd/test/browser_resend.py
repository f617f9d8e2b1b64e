"""
The browser check's resend part, in a module of its own to keep
browser_check.py from growing: a message the server could not store
(``unavailable``) is sent again by the page as it was sealed, by itself and on
the person's "retry", and shown once by its reader; so is one whose answer
never came, on "retry" once the page has reconnected.

Run by browser_check.py through its lying WebSocket (L{browser_check.LyingSocket},
whose C{refuse} answers the page's envelopes); every function here returns
what L{browser_check.Results.attempt} expects (True, or "!why").
"""

WAIT_MS = 20000
# The page waits 1, 2 and 4 s between resends.
RESENDS_MS = 7000

NEVER_STORED = "dave, this one the server could not store at first"
STORED_AFTER_ALL = "dave, this one was stored although the server said not"
NO_ANSWER = "dave, this one was stored but the connection dropped before the answer"


def sentSince(liar, before):
    """
    The envelopes the page sent since C{before} of them had been sent.
    """
    return [m["envelope"] for m in liar.envelopesSent()[before:]]


def showsOnce(page, listId, name, text):
    """
    Whether C{page}'s conversation with C{name} shows C{text} exactly once.
    """
    page.locator("#%s li[data-conv='%s'] button" % (listId, name)).click()
    page.locator("#messages .message .text", has_text=text).first.wait_for(timeout=WAIT_MS)
    shown = page.locator("#messages .message .text", has_text=text).count()
    return shown == 1 or "!%r is shown %d times" % (text, shown)


def sentTwiceAsSealed(liar, before, dave, alice, text):
    """
    Whether dave's page shows C{text} as sent, having sent one envelope twice
    since C{before}, and alice's shows it once.
    """
    dave.locator("#messages .message:not(.pending):not(.failed) .text",
                 has_text=text).wait_for(timeout=WAIT_MS)
    sent = sentSince(liar, before)
    if len(sent) != 2 or sent[0] != sent[1]:
        return "!sent %d envelopes, %d distinct" % (len(sent), len({e["id"] for e in sent}))
    return showsOnce(alice, "dm-list", "dave", text)


def typed(page, text):
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def resentAsSealed(liar, dave, alice):
    """
    dave's direct message to alice meets ``unavailable`` four times: the page
    sends the same envelope 4 times, 1, 2 and 4 s apart, then marks it not
    sent; his "retry" sends that envelope once more, which the server takes.
    alice shows it once.
    """
    before = len(liar.envelopesSent())
    liar.refuse = ["unavailable"] * 4
    typed(dave, NEVER_STORED)
    failed = dave.locator("#messages .message.failed", has_text=NEVER_STORED)
    failed.wait_for(timeout=WAIT_MS + RESENDS_MS)
    if "could not be stored" not in failed.inner_text():
        return "!the failed message says %r" % (failed.inner_text(),)
    failed.locator("button.retry").click()
    dave.locator("#messages .message:not(.pending):not(.failed) .text",
                 has_text=NEVER_STORED).wait_for(timeout=WAIT_MS)
    sent = sentSince(liar, before)
    if len(sent) != 5 or any(envelope != sent[0] for envelope in sent):
        return "!sent %d envelopes, %d distinct" % (len(sent), len({e["id"] for e in sent}))
    return showsOnce(alice, "dm-list", "dave", NEVER_STORED)


def storedAfterAll(liar, dave, alice):
    """
    The server stores dave's message but answers ``unavailable``: the page
    sends the same envelope again after 1 s, which the server refuses as a
    replayed id (``conflict``): the page shows it as sent; alice shows it once.
    """
    before = len(liar.envelopesSent())
    liar.refuse = ["lost"]
    typed(dave, STORED_AFTER_ALL)
    return sentTwiceAsSealed(liar, before, dave, alice, STORED_AFTER_ALL)


def noAnswer(liar, dave, alice):
    """
    The server stores dave's message, but the connection drops before its
    answer: the page marks it perhaps not sent and reconnects; his "retry"
    sends the same envelope, which the server refuses as a replayed id
    (``conflict``): the page shows it as sent; alice shows it once.
    """
    before = len(liar.envelopesSent())
    liar.refuse = ["dropped"]
    typed(dave, NO_ANSWER)
    failed = dave.locator("#messages .message.failed", has_text=NO_ANSWER)
    failed.wait_for(timeout=WAIT_MS)
    if "perhaps not sent" not in failed.inner_text():
        return "!the failed message says %r" % (failed.inner_text(),)
    dave.locator("#conn-status.online").wait_for(timeout=WAIT_MS)
    failed.locator("button.retry").click()
    return sentTwiceAsSealed(liar, before, dave, alice, NO_ANSWER)
