"""
chatd: a multi-protocol, end-to-end encrypted chat daemon built on Twisted.
"""

__version__ = "0.1.0"


def printVersion() -> None:
    """
    Print chatd's version and exit: the C{--version} of every chatd command,
    which would otherwise print Twisted's (L{twisted.python.usage.Options}'s
    own C{--version}).
    """
    print("chatd", __version__)
    raise SystemExit(0)
