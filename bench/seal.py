"""
What the server's at-rest seal costs per stored message: the envelope of one
room message for N members, sealed and opened as the store does, in this
process, with no server.

    python -m bench.seal [--members 2 50 200 1000] [--rounds 2000] [--devices N]

For each room size it builds a real envelope (C{chatd.e2e.seal}; one RSA key
stands for every member, which changes nothing in its size; with C{--devices
N}, a version-2 envelope with an entry for each of N devices per member) and
prints the CPU microseconds per message, best of five runs, of:

- C{fernet}: the Fernet pass over the whole envelope that chatd used before
  schema version 2 (C{MultiFernet.encrypt} and C{decrypt}), for comparison;
- C{aes-gcm}: C{chatd.store.seal.AtRestKeys.seal} and C{open}, AES-256-GCM
  over the raw bytes bound to the row, what the store does now;

and the client's own cost to seal that envelope (C{seal}, milliseconds: an
RSA-OAEP wrap per entry and one signature).

Run it under C{nice -n 19} on a shared machine: it counts its own CPU time,
so the figures hold however busy the machine is, within its caches' noise.
"""

import argparse
import time
import timeit
from functools import partial

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatd.e2e import entryKey
from chatd.e2e import seal as sealEnvelope
from chatd.store.seal import AtRestKeys, generateKey


def sealFor(members, signingKey, devices=0):
    """
    Seal a room envelope with a key entry for each of C{members} members, or
    with C{devices}, a version-2 one with an entry for each of that many
    devices per member.
    """
    der = signingKey.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not devices:
        recipients = {"member%04d" % (n,): der for n in range(members)}
        return sealEnvelope("member0000", signingKey, ("room", "#bench"), recipients,
                            b"x" * 100)
    recipients = {entryKey("member%04d" % (n,), "dev%d" % (d,)): der
                  for n in range(members) for d in range(devices)}
    return sealEnvelope("member0000", signingKey, ("room", "#bench"), recipients,
                        b"x" * 100, device="dev0", head=(1, "0" * 64), hist=50)


def perCall(function, rounds):
    """
    CPU microseconds per call of C{function}, the best of five runs of
    C{rounds}: CPU time rather than wall time, so that other work on the
    machine does not count.
    """
    runs = timeit.repeat(function, timer=time.process_time, number=rounds, repeat=5)
    return min(runs) / rounds * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 50, 200, 1000])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=0,
                        help="devices per member: seal version 2 (default: version 1)")
    arguments = parser.parse_args(argv)
    signingKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    line = generateKey()
    fernet = MultiFernet([Fernet(line)])
    keys = AtRestKeys([line])
    row = ("#bench", "member0000", "bench-envelope-id")
    print("members  envelope  fernet seal/open (us)  aes-gcm seal/open (us)  seal (ms)")
    for members in arguments.members:
        sealing = partial(sealFor, members, signingKey, arguments.devices)
        envelope = sealing()
        token = fernet.encrypt(envelope)
        keyId, body = keys.seal(envelope, *row)
        assert keys.open(keyId, body, *row) == envelope
        figures = [
            perCall(partial(fernet.encrypt, envelope), arguments.rounds),
            perCall(partial(fernet.decrypt, token), arguments.rounds),
            perCall(partial(keys.seal, envelope, *row), arguments.rounds),
            perCall(partial(keys.open, keyId, body, *row), arguments.rounds),
            perCall(sealing, max(1, arguments.rounds // 200)) / 1000,
        ]
        print("%7d  %8d  %10.1f / %-9.1f  %10.1f / %-9.1f  %9.2f"
              % (members, len(envelope), *figures))


if __name__ == "__main__":
    main()
