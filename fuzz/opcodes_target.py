"""
Every binary decoder, server's and client's, on one opcode and arbitrary payload.

    nice -n 19 python fuzz/opcodes_target.py -max_total_time=600
"""

from common import run

from chatd.test.robustness import checkBinaryPayload


def testOneInput(data):
    if data:
        checkBinaryPayload(data[0], data[1:])


if __name__ == "__main__":
    run(testOneInput)
