# -*- test-case-name: chatd.test.test_names -*-
"""
Rules for user and room names.

Names are compared ignoring ASCII case (C{fold}), but kept and shown as their
owner wrote them. The patterns admit ASCII only, so C{str.lower} is an exact fold.
"""

import re

_USER = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_ROOM = re.compile(r"#?[A-Za-z0-9_.-]{1,32}")
_GUEST = re.compile(r"rand[0-9]+", re.IGNORECASE)


def fold(name):
    """
    The key under which C{name} is unique.
    """
    return name.lower()


def isUserName(name):
    """
    Whether C{name} may name a user (a guest nickname or an account).
    """
    return _USER.fullmatch(name) is not None


def isRoomName(name):
    """
    Whether C{name} may name a room (an optional C{#} and up to 32 characters).
    """
    return _ROOM.fullmatch(name) is not None


def isGuestName(name):
    """
    Whether C{name} is of the form reserved for server-assigned guest names.
    """
    return _GUEST.fullmatch(name) is not None
