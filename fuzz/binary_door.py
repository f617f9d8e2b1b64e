"""
The binary door over a StringTransport: a guest or an account sends a run of
frames, whole (opcode and payload from the fuzzer) or raw bytes.

    nice -n 19 python fuzz/binary_door.py -max_total_time=600
"""

import atheris
from common import VOCABULARY, run, word

from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.robustness import runBinaryDoor

OPS = sorted(set(Op))


def testOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    account = fdp.ConsumeBool()
    frames = []
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        how = fdp.ConsumeIntInRange(0, 4)
        if how == 4:
            frames.append(request(fdp))
            continue
        size = fdp.ConsumeIntInRange(0, 300)
        if how == 0:
            frames.append(fdp.ConsumeBytes(size))
        else:
            op = fdp.PickValueInList(OPS) if how < 3 else fdp.ConsumeInt(1) & 0xFF
            frames.append(opcodes.frame(op, fdp.ConsumeBytes(size)))
    runBinaryDoor(frames, account)


def request(fdp):
    """
    A request laid out as its opcode says, its fields fuzzed or known values.
    """
    op = fdp.PickValueInList(REQUESTS)
    values = [field(fdp, kind) for kind in opcodes.REQUESTS[op]]
    try:
        return opcodes.frame(op, opcodes.encode(opcodes.REQUESTS[op], values))
    except ValueError:  # a fuzzed value too long for its field
        return opcodes.frame(op, b"")


def field(fdp, kind):
    if kind.startswith("u"):
        return fdp.ConsumeIntInRange(0, 2 ** int(kind[1:]) - 1)
    if kind.startswith("str"):
        return word(fdp)
    how = fdp.ConsumeIntInRange(0, 2)
    if how == 0:
        return VOCABULARY["der"]
    if how == 1:
        return fdp.PickValueInList(VOCABULARY["envelopes"])
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))


REQUESTS = sorted(opcodes.REQUESTS)


if __name__ == "__main__":
    run(testOneInput)
