# -*- test-case-name: chatd.test.test_service -*-
"""
The statuses every chatd front door reports, and the domain errors that carry them.

The core raises these; each protocol maps C{error.status} to its own wire form (a
binary status byte, a two-digit hex code on the text door, a code name on the
WebSocket door), so a refusal means the same thing whichever door a user came in by.
"""

from enum import IntEnum


class Status(IntEnum):
    """
    Response statuses, numbered as the binary protocol numbers them.
    """

    OK = 0x00
    ERROR = 0x01
    RATE_LIMITED = 0x02
    AUTH_REQUIRED = 0x04
    FORBIDDEN = 0x05
    NOT_FOUND = 0x06
    CONFLICT = 0x07
    TOO_LARGE = 0x08
    STALE_RECIPIENTS = 0x09
    UNAVAILABLE = 0x0A


class ChatError(Exception):
    """
    A request was refused; nothing it asked for was carried out.

    @ivar message: a sentence for the user, safe to show and to send.
    """

    status = Status.ERROR

    def __init__(self, message):
        Exception.__init__(self, message)
        self.message = message


class BadRequest(ChatError):
    """Malformed input, an unknown request, or a rule broken (status 0x01)."""

    status = Status.ERROR


class RateLimited(ChatError):
    """Too many requests of one kind; the request was dropped (0x02)."""

    status = Status.RATE_LIMITED


class AuthRequired(ChatError):
    """The session has not greeted (or, on the WebSocket door, logged in) yet (0x04)."""

    status = Status.AUTH_REQUIRED


class Forbidden(ChatError):
    """Wrong password, bad signature, or not allowed (0x05)."""

    status = Status.FORBIDDEN


class NotFound(ChatError):
    """No such user, room or transfer, or the user is offline (0x06)."""

    status = Status.NOT_FOUND


class Conflict(ChatError):
    """Name taken, room exists, already a member, replayed envelope id (0x07)."""

    status = Status.CONFLICT


class TooLarge(ChatError):
    """A frame, message or file over a configured limit (0x08)."""

    status = Status.TOO_LARGE


class StaleRecipients(ChatError):
    """
    An envelope's key map does not match the target's members and keys (0x09).

    @ivar members: the current C{(name, publicKeyDER)} pairs, sorted by name, so
        that the client can re-encrypt and retry.
    """

    status = Status.STALE_RECIPIENTS

    def __init__(self, message, members):
        ChatError.__init__(self, message)
        self.members = members


class Unavailable(ChatError):
    """
    Something the request needs, the database, did not answer in time or
    cannot be reached; the request may not have been carried out, and may be
    tried again (0x0A).
    """

    status = Status.UNAVAILABLE

