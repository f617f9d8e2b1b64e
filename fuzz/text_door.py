"""
The text door over a StringTransport: a guest or an account sends lines, raw
or a known command with fuzzed arguments, or MSG:: with fuzzed text.

    nice -n 19 python fuzz/text_door.py -max_total_time=600
"""

import atheris
from common import VOCABULARY, run, text, word

from chatd.protocols.text import TextProtocol
from chatd.test.robustness import runTextDoor

COMMANDS = sorted(TextProtocol._commands)


def testOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    account = fdp.ConsumeBool()
    lines = []
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        how = fdp.ConsumeIntInRange(0, 2)
        if how == 0:
            lines.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
            continue
        if how == 1:
            words = [fdp.PickValueInList(COMMANDS)]
            words += [word(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))]
            if words[0] == "/pm" and fdp.ConsumeBool():
                words.append(fdp.PickValueInList(VOCABULARY["envelopes"]).decode())
            line = "CMD::" + " ".join(words)
        elif fdp.ConsumeBool():
            line = "MSG::" + text(fdp, 200)
        else:
            line = "MSG::" + fdp.PickValueInList(VOCABULARY["envelopes"]).decode()
        lines.append(line.encode("utf-8", "surrogatepass"))
    runTextDoor(lines, account)


if __name__ == "__main__":
    run(testOneInput)
