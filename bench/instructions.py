"""
Instructions per delivery in a room's fan-out, counted by valgrind's
callgrind, for chatd (one or more source trees) and twisted.words' IRC server
alike (L{bench.inprocess}).

On a shared two-core machine the CPU time a server spends per delivery moves
by 10 to 20 % from run to run, more than most changes to the fan-out are
worth. The count of instructions its process runs does not move (two runs of
one tree agree within 0.3 %), so two versions of a change can be told apart
in one minute. It is not a time: the kernel's side of each send is left out,
and an instruction of the JSON decoder is not one of the interpreter's loop.
The published figures stay the CPU times of L{bench.shapes}; this is the
developer's scale between them.

    python -m bench.instructions --chatd before=/tmp/old --chatd after=. --words \\
        --readers 200 --messages 40

Each system runs in its own process under C{valgrind --tool=callgrind}, with
counting switched on (C{callgrind_control}) only around the messages: setting
up the room, sealing the envelopes and starting Python are left out.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

# Messages handed to the server in one read: a flood's turn holds several,
# and one send then carries several frames to each reader (chatd's TurnEnd,
# Twisted's write buffer).
BATCH = 5


def measure(system: str, readers: int, messages: int, size: int) -> Dict[str, object]:
    """
    Run C{messages} through a room of C{readers} on C{system} ("chatd" or
    "words"), counted only around the messages when under callgrind.

    @return: deliveries and the bytes the readers read.
    """
    from bench import inprocess
    build = inprocess.chatdRoom if system == "chatd" else inprocess.wordsRoom
    room, sender, frames = build(readers, messages, size)
    _count(True)
    read = 0
    for start in range(0, len(frames), BATCH):
        read += room.turn(sender, b"".join(frames[start:start + BATCH]))
    _count(False)
    room.close()
    return {"deliveries": messages * (readers - 1), "bytes_read": read}


def _count(on: bool) -> None:
    """
    Switch callgrind's counting on or off for this process; nothing when
    not under callgrind.
    """
    if os.environ.get("BENCH_UNDER_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                       check=True, capture_output=True)


# glibc copies and fills blocks over a few KiB with C{rep movsb} and C{rep
# stosb}, and callgrind counts every byte such an instruction moves as one
# instruction, where the vector loop used below that size moves 32 bytes in
# two: a server that copies more bytes (chatd's envelopes are tens of KB)
# looked about 10 % more expensive than it is. Past these thresholds glibc
# keeps to the vector loop, whose count is near what the copy costs.
_VECTOR_COPIES = ("glibc.cpu.x86_rep_movsb_threshold=2147483647:"
                  "glibc.cpu.x86_rep_stosb_threshold=2147483647")


def counted(system: str, tree: Optional[str], args) -> Dict[str, object]:
    """
    L{measure} in a child process under callgrind, with C{tree} first on
    its C{PYTHONPATH}.

    @return: its figures and the instructions counted.
    """
    with tempfile.TemporaryDirectory() as scratch:
        output = os.path.join(scratch, "callgrind.out")
        environ = dict(os.environ, BENCH_UNDER_CALLGRIND="1", GLIBC_TUNABLES=_VECTOR_COPIES)
        path = [os.path.abspath(tree)] if tree else []
        path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        environ["PYTHONPATH"] = os.pathsep.join(path)
        child = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             "--callgrind-out-file=" + output, sys.executable, "-m", "bench.instructions",
             "--child", system, "--readers", str(args.readers),
             "--messages", str(args.messages), "--bytes", str(args.bytes)],
            env=environ, cwd=scratch, capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["instructions"] = _total(output)
    result["per_delivery"] = round(result["instructions"] / result["deliveries"])
    return result


def _total(output: str) -> int:
    """
    The instructions a callgrind output file counted: its C{totals} line,
    at the end (the C{summary} line at its start says 0 when counting was
    off as the program started).
    """
    with open(output) as lines:
        totals = [line for line in lines if line.startswith("totals:")]
    if not totals:
        raise ValueError("no totals in " + output)
    return int(totals[-1].split()[1])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--chatd", action="append", default=[], metavar="NAME=TREE",
                        help="a chatd source tree to count (repeatable)")
    parser.add_argument("--words", action="store_true",
                        help="count twisted.words' IRC server too")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--bytes", type=int, default=100, help="plaintext bytes per message")
    parser.add_argument("--child", choices=("chatd", "words"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.readers, args.messages, args.bytes)))
        return
    runs = [(name, "chatd", tree) for name, _, tree in
            (spec.partition("=") for spec in args.chatd)]
    if args.words:
        runs.append(("twisted.words", "words", None))
    if not runs:
        parser.error("nothing to count: give --chatd NAME=TREE or --words")
    print(f"{args.readers} readers, {args.messages} messages of {args.bytes} B,"
          f" {BATCH} a turn")
    for name, system, tree in runs:
        result = counted(system, tree, args)
        print(f"{name:16s} {result['per_delivery']:>8,} instructions per delivery"
              f"  ({result['bytes_read'] / result['deliveries']:,.0f} B read per delivery)")
        print("RESULT " + json.dumps(dict(result, name=name)))


if __name__ == "__main__":
    main()
