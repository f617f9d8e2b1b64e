# -*- test-case-name: chatd.test.test_registration -*-
"""
Who may make an account, and who may not log in: C{--registration} and the
server-wide ban that C{python -m chatd.admin ban} sets.

C{--registration} is one of:

  - C{open} (the default): anyone may REGISTER;
  - C{invite}: REGISTER must carry an invite token made by C{python -m
    chatd.admin invite}; the store uses up one of its uses in the transaction
    that creates the account (L{chatd.store.operations.useInvite});
  - C{closed}: nobody may REGISTER; accounts come from C{python -m chatd.admin
    create-user}.

Every door calls the one L{chatd.core} REGISTER, so the mode holds on all of
them alike, with the same statuses and messages.
"""

from typing import Optional

from chatd.errors import Forbidden
from chatd.model import Account

OPEN = "open"
INVITE = "invite"
CLOSED = "closed"
MODES = (OPEN, INVITE, CLOSED)


def parseRegistration(value: str) -> str:
    """
    A registration mode: C{open}, C{invite} or C{closed}.
    """
    mode = value.strip().lower()
    if mode not in MODES:
        raise ValueError("%r is not open, invite or closed" % (value,))
    return mode


def admit(mode: str, invite: Optional[str]) -> Optional[str]:
    """
    Check that a registration may go ahead under C{mode}.

    @param invite: the token the client sent, or L{None}.
    @return: the invite the store must use up, or L{None} for none.
    @raise Forbidden: when C{mode} refuses it.
    """
    if mode == CLOSED:
        raise Forbidden("registration is closed: ask the server's operator for an account")
    if mode == INVITE:
        if not invite:
            raise Forbidden("registration needs an invite: ask the server's operator for one")
        return invite
    return None


def checkNotBanned(account: Account) -> None:
    """
    Refuse to log in as a banned account, on every door and by password or
    signature alike.

    @raise Forbidden: when C{account} is banned.
    """
    if account.banned:
        raise Forbidden("this account is banned from this server")
