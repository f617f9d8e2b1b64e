"""
Envelopes and public keys: Envelope.parse on arbitrary bytes or on a valid
envelope with one field replaced by a fuzzed JSON value, and loadPublicKey on
arbitrary DER.

    nice -n 19 python fuzz/envelope_target.py -max_total_time=600
"""

import json

import atheris
from common import jsonValue, run

from chatd import e2e
from chatd.test.fakes import privateKey, publicDer
from chatd.test.robustness import checkEnvelope, checkPublicKey

SEALED = json.loads(e2e.seal("alice", privateKey("alice"), ("room", "#r"),
                             {"alice": publicDer("alice"), "bob": publicDer("bob")}, b"fuzz"))
NAMES = sorted(SEALED) + ["extra"]
DER = publicDer("alice")


def testOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    how = fdp.ConsumeIntInRange(0, 3)
    if how == 0:
        checkEnvelope(fdp.ConsumeBytes(1000))
    elif how == 1:
        fields = dict(SEALED)
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            fields[fdp.PickValueInList(NAMES)] = jsonValue(fdp)
        checkEnvelope(json.dumps(fields).encode("utf-8"))
    elif how == 2:
        checkPublicKey(fdp.ConsumeBytes(600))
    else:
        der = bytearray(DER)
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            der[fdp.ConsumeIntInRange(0, len(der) - 1)] = fdp.ConsumeInt(1) & 0xFF
        checkPublicKey(bytes(der))


if __name__ == "__main__":
    run(testOneInput)
