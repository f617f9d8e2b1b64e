"""
What every bench command line shares: argparse types for addresses and whole
numbers, and L{main}, which runs the chosen measurement and turns a
L{BenchError} into a message and an exit status.
"""

import argparse

from bench.benchclient import BenchError


def serverAddress(text):
    """
    Parse C{HOST:PORT} for argparse.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def webSocketURL(text):
    """
    Parse C{http://HOST:PORT} (or C{ws://}) for argparse into the URL of the
    WebSocket door, C{ws://HOST:PORT/ws}.
    """
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if scheme not in ("http", "ws") or not sep or not colon or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, not {text!r}")
    return f"ws://{host}:{port}/ws"


def atLeast(minimum):
    """
    An argparse type for a whole number no smaller than C{minimum}.
    """
    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


async def main(reactor, args):
    """
    Run the chosen measurement; a L{BenchError} ends it with its message and
    exit status 1 instead of a traceback.
    """
    try:
        await args.run(reactor, args)
    except BenchError as e:
        print(f"error: {e}")
        raise SystemExit(1)
