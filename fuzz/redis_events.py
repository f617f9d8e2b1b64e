"""
Events from other nodes of a cluster: what a node does with a message from
Redis, raw bytes or a well-formed wrapper around a fuzzed event of a known kind.

    nice -n 19 python fuzz/redis_events.py -max_total_time=600
"""

import json

import atheris
from common import jsonValue, run, text

from chatd.fanout.events import ENTRY, EVENTS, encodeValue
from chatd.test.robustness import runRedisMessage

KINDS = sorted(EVENTS)


def value(fdp):
    """
    A field value: any JSON, bytes, or a name the node knows.
    """
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    if how == 1:
        return fdp.PickValueInList(["fuzzer", "#room", "nobody", ""])
    return jsonValue(fdp)


def fields(fdp, names):
    obj = {}
    for name in names:
        if fdp.ConsumeIntInRange(0, 9):
            obj[name] = value(fdp)
    if not fdp.ConsumeIntInRange(0, 4):
        obj[text(fdp, 8)] = value(fdp)
    return obj


def testOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        runRedisMessage(fdp.ConsumeBytes(1000))
        return
    if how == 1:
        message = {"n": "there", "c": "sync",
                   "u": {text(fdp, 8): encodeValue(fields(fdp, ENTRY))
                         for _ in range(fdp.ConsumeIntInRange(0, 2))}}
    else:
        kind = fdp.PickValueInList(KINDS)
        event = dict(fields(fdp, EVENTS[kind]), t=kind)
        message = {"n": "there", "i": "x", "s": fdp.ConsumeIntInRange(1, 3),
                   "e": encodeValue(event)}
    runRedisMessage(json.dumps(message))


if __name__ == "__main__":
    run(testOneInput)
