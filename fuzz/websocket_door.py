"""
The WebSocket JSON vocabulary: jsonwire.parseRequest on arbitrary text, then the
door itself in memory, a guest or an account sending a run of messages: raw
text, binary, or a known request type with fuzzed JSON fields.

    nice -n 19 python fuzz/websocket_door.py -max_total_time=600
"""

import json

import atheris
from common import VOCABULARY, jsonValue, run, word

from chatd.protocols import jsonwire
from chatd.test.robustness import checkJSONRequest, runWebSocketDoor

TYPES = sorted(jsonwire.REQUESTS)
FIELDS = sorted({name for spec in jsonwire.REQUESTS.values() for name in spec} | {"id"})


def message(fdp):
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        # A text message is UTF-8 on the wire: no lone surrogates.
        return fdp.ConsumeUnicodeNoSurrogates(200)
    if how == 1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 50))
    kind = fdp.PickValueInList(TYPES)
    obj = {"type": kind}
    names = sorted(jsonwire.REQUESTS[kind]) if how == 2 else FIELDS
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        obj[fdp.PickValueInList(names) if names else "id"] = fieldValue(fdp)
    return json.dumps(obj)


def fieldValue(fdp):
    """
    A known word, key or envelope, or any JSON value.
    """
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        return word(fdp)
    if how == 1:
        return VOCABULARY["pem"]
    if how == 2:
        return json.loads(fdp.PickValueInList(VOCABULARY["envelopes"]))
    return jsonValue(fdp)


def testOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    account = fdp.ConsumeBool()
    messages = [message(fdp) for _ in range(fdp.ConsumeIntInRange(1, 5))]
    for m in messages:
        if isinstance(m, str):
            checkJSONRequest(m)
    runWebSocketDoor(messages, account)


if __name__ == "__main__":
    run(testOneInput)
