"""
What the atheris targets share: starting the fuzzer on a target, and building
structured input (frames, lines, JSON values) from the fuzzer's bytes, so that
mutations reach past the first length check instead of dying on it.
"""

import os
import sys

import atheris

# The targets run from the checkout: chatd is imported from here.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports(include=["chatd"]):
    # The Redis fan-out is imported lazily by the checks (only a cluster needs
    # txredisapi), so it is named here to be instrumented too.
    import chatd.fanout.redis  # noqa: F401
    import chatd.test.robustness  # noqa: F401  (instrumented with everything it imports)


def run(testOneInput):
    """
    Fuzz C{testOneInput} with the command line's libFuzzer options.
    """
    atheris.Setup(sys.argv, testOneInput)
    atheris.Fuzz()


def text(fdp, limit=64):
    """
    A string of any code points, lone surrogates included.
    """
    return fdp.ConsumeUnicodeNoSurrogates(limit) if fdp.ConsumeBool() else fdp.ConsumeUnicode(limit)


def jsonValue(fdp, depth=0):
    """
    Any JSON value, nested up to a few levels.
    """
    kind = fdp.ConsumeIntInRange(0, 7 if depth < 3 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 10))
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return text(fdp)
    if kind == 5:
        return [jsonValue(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {text(fdp, 12): jsonValue(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}


def _vocabulary():
    """
    Values the doors accept, so that fuzzed requests get past the checks on
    their form to the rules behind them: the driver's names, room, key and
    envelopes it could really send.
    """
    import base64

    from chatd import e2e
    from chatd.protocols import jsonwire
    from chatd.test.fakes import privateKey, publicDer
    from chatd.test.robustness import USER

    der = publicDer(USER)
    toRoom = e2e.seal(USER, privateKey(USER), ("room", "#room"), {USER: der}, b"hi")
    toUser = e2e.seal(USER, privateKey(USER), ("user", USER), {USER: der}, b"hi")
    words = ["#room", "room", USER, USER.upper(), "nobody", "rand1", "x" * 33, "0", "1",
             "18446744073709551615", "2023-11-14T22:13:20.000Z", "room", "user",
             base64.b64encode(der).decode(), base64.b64encode(b"sig").decode()]
    return {"words": words, "der": der, "pem": jsonwire.derToPem(der),
            "envelopes": [toRoom, toUser]}


VOCABULARY = _vocabulary()


def word(fdp):
    """
    A word the doors know, or any text.
    """
    if fdp.ConsumeBool():
        return fdp.PickValueInList(VOCABULARY["words"])
    return text(fdp, 40)
