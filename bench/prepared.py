"""
Keys and envelopes made before the clock starts, in worker processes: the
client's RSA work for the measurements of delivery to many receivers
(C{websocket}, C{cluster}), which is not what they measure.
"""

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization

from bench.benchclient import newKey
from chatd import e2e


def _keyPair(_):
    """
    One RSA-2048 key pair as DER, PKCS#8 private and SPKI public: plain bytes,
    so that it can come back from a worker process.
    """
    key, der = newKey()
    private = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, der


def _sealBatch(job):
    """
    Seal a batch of envelopes in a worker process; see L{sealAll}.
    """
    senderName, privateDer, room, recipients, size, ts, count = job
    key = serialization.load_der_private_key(privateDer, None)
    plaintext = b"x" * size
    return [e2e.seal(senderName, key, ("room", room), recipients, plaintext, ts=ts)
            for _ in range(count)]


def sealAll(pool, processes, count, sender, privateDer, room, recipients, size):
    """
    Seal C{count} envelopes from C{sender} to C{room}, each for every one of
    C{recipients}, in the worker processes of C{pool}.

    An envelope for a hundred readers takes a hundred RSA encryptions (about
    5 ms here), so sealing a few thousand in one process would take longer
    than the measurement; in small batches, the workers share them evenly.
    Every envelope carries the same C{ts}, taken now: the server accepts
    timestamps within 5 minutes of its clock, which a run stays inside.

    @return: C{(envelopes, ids)}, the envelopes in sending order and the set
        of their ids.
    """
    ts = int(time.time() * 1000)
    batch = max(1, min(50, -(-count // (4 * processes))))
    jobs = [(sender, privateDer, room, recipients, size, ts, min(batch, count - first))
            for first in range(0, count, batch)]
    envelopes = [envelope for sealed in pool.map(_sealBatch, jobs) for envelope in sealed]
    return envelopes, {json.loads(envelope)["id"] for envelope in envelopes}


def prepare(args, names, room):
    """
    Make an RSA-2048 key for each of C{names}, and seal C{args.messages}
    envelopes from the first of them to C{room}, for all of them: the client's
    RSA work, all done before any connection opens and so before the clock
    starts.

    The work runs in C{args.processes} worker processes, started with
    C{spawn}: a forked child would inherit a copy of this process's reactor.

    @return: C{(recipients, envelopes, ids)}: name to SPKI DER for every name,
        the envelopes in sending order, and the set of their ids.
    """
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
        pairs = list(pool.map(_keyPair, range(len(names))))
        keyed = time.perf_counter()
        recipients = {name: der for name, (_, der) in zip(names, pairs)}
        envelopes, ids = sealAll(pool, args.processes, args.messages, names[0], pairs[0][0],
                                 room, recipients, args.size)
    print(f"made {len(names)} RSA-2048 keys in {keyed - start:.1f} s; sealed"
          f" {len(envelopes)} envelopes for {len(names)} readers each in"
          f" {time.perf_counter() - keyed:.1f} s ({args.processes} processes,"
          f" {len(envelopes[0])} bytes an envelope)")
    return recipients, envelopes, ids
