# -*- test-case-name: chatd.test.test_client -*-
"""
The terminal client's own errors, in a module of their own so that every part
of the client (messaging, trust, file transfers) can raise them without
importing the others.
"""


class ClientError(Exception):
    """
    A command that cannot be carried out; the message says why.
    """


class Held(ClientError):
    """
    An envelope from a user whose key changed and is neither accepted nor
    rejected yet: a message waits for the person's decision.
    """


class Duplicate(ClientError):
    """
    A message shown already, come again: the same envelope, from its
    sender's retry (L{chatd.client.replay}), or sent again by the catch-up
    after a login (the server's mark of what this device got may lag):
    dropped without a word.
    """


class TransferError(Exception):
    """
    A transfer that cannot go on; the message says why, in words for the person.
    """
