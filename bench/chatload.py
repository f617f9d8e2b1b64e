"""
The room fan-out load of C{ircload.py} (the IRC peers' generator in the lead's
bench material), on chatd's binary door with real end-to-end envelopes, so
that chatd and an IRC server are measured on the same shape.

C guests connect to 127.0.0.1:PORT (plain TCP or, with C{--tls}, TLS), greet,
take the names C{u0}, C{u1}... and join one room. S of them then each send M
room messages of B bytes of plaintext, at full speed (at most C{--window}
unacknowledged each) or at C{--rate} messages a second each (with
C{--stagger}, spread evenly: L{bench.pacing}). Every client reads everything;
latency is the arrival time (with C{--kernel-stamps}, the kernel's) minus the
send time of the envelope (one process, one clock). chatd does not echo a room
message to its sender, so S x M x (C - 1) deliveries are expected, each
exactly once.

Envelopes are sealed before the clock starts, in worker processes: an
envelope's signature is real (the server checks it), but every guest shares
one RSA key and every key entry carries the one wrapped message key, as the
server cannot tell (and does not need to: it checks names and key ids). What
sealing costs a client is L{bench.seal}'s measurement.

Output: a summary and one line C{RESULT {json}} with the fields ircload.py
prints (C{server_cpu_ms_per_1000_deliveries} is microseconds per delivery).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import ssl
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import pacing
from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op

_LENGTH = struct.Struct(">I")
_ID_FIELD = b'"id":"'


class ChatClient(asyncio.Protocol):
    """
    One guest: requests answered in order, room messages counted and timed.
    """

    def __init__(self, stats):
        self.stats = stats
        self.buffer = b""
        self.answers = []
        self.transport: Any = None
        self.received = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.stats.error(f"connection lost: {exc!r}")
        for answer in self.answers:
            if not answer.done():
                answer.set_exception(ConnectionError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data):
        self.dataArrived(data, self.stats.clock.now())

    def dataArrived(self, data, arrived):
        buffer = self.buffer + data if self.buffer else data
        offset, end = 0, len(buffer)
        stats = self.stats
        got = 0
        while end - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if end - offset - 4 < length:
                break
            op = buffer[offset + 6]
            if op == Op.ROOM_MSG:
                at = buffer.find(_ID_FIELD, offset + 7, offset + 4 + length)
                sent = stats.sentAt.get(buffer[at + 6:at + 28])
                if sent is not None:
                    stats.latencies.append(arrived - sent)
                    got += 1
            elif op == Op.RESPONSE:
                answer = self.answers.pop(0)
                answer.set_result(buffer[offset + 7:offset + 4 + length])
            offset += 4 + length
        self.buffer = buffer[offset:]
        if got:
            self.received += got
            stats.received += got
            stats.lastDelivery = arrived

    def send(self, frame):
        """
        Send a request frame; its answer's payload (status first) comes on
        the returned future.
        """
        answer = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        self.transport.write(frame)
        return answer

    async def ok(self, op, *values):
        payload = await self.send(opcodes.request(op, *values))
        if payload[0] != 0:
            raise RuntimeError(f"{op.name} refused: {payload[1:]!r}")
        return payload


def _seal(job):
    """
    Seal C{count} envelopes from C{sender} to C{room} in a worker process:
    each one's own id, nonce and signature; one shared key entry for every
    reader.
    """
    privateDer, sender, room, readers, size, ts, count = job
    key = serialization.load_der_private_key(privateDer, None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    plaintext = b"x" * size
    sealed = []
    for _ in range(count):
        envelope = json.loads(e2e.seal(sender, key, ("room", room), {sender: der},
                                       plaintext, ts=ts))
        wrapped, keyId = envelope["encrypted_keys"][sender], envelope["key_ids"][sender]
        envelope["encrypted_keys"] = {name: wrapped for name in readers}
        envelope["key_ids"] = {name: keyId for name in readers}
        sealed.append(json.dumps(envelope, separators=(",", ":")).encode())
    return sealed


def sealAll(privateDer, senders, room, readers, size, messages, processes):
    """
    Every sender's envelopes, sealed in C{processes} workers.

    @return: one list of envelopes per sender.
    """
    ts = int(time.time() * 1000)
    batch = max(1, min(100, messages // max(1, 2 * processes)))
    jobs, owners = [], []
    for sender in senders:
        for first in range(0, messages, batch):
            jobs.append((privateDer, sender, room, readers, size, ts,
                         min(batch, messages - first)))
            owners.append(sender)
    context = multiprocessing.get_context("spawn")
    out: dict = {sender: [] for sender in senders}
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        for sender, sealed in zip(owners, pool.map(_seal, jobs)):
            out[sender].extend(sealed)
    return [out[sender] for sender in senders]


async def connectAll(args, stats, names, der):
    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    slots = asyncio.Semaphore(args.connect_concurrency)

    async def one(name):
        async with slots:
            client = await pacing.connect(args.port, ChatClient(stats), stats.clock,
                                          ssl=context)
            await client.ok(Op.HELLO)
            await client.ok(Op.NICK, name)
            await client.ok(Op.SET_KEY, der)
            await client.ok(Op.JOIN, args.room, "")
            return client

    return await asyncio.gather(*[one(name) for name in names])


async def sendAll(client, frames, ids, stats, args, due=None):
    """
    Send one sender's frames at the C{due} times (L{pacing.dueTimes}: at
    C{--rate}), or as fast as a window of C{--window} unacknowledged messages
    lets them go.
    """
    refused = 0
    now = stats.clock.now
    if due is not None:
        pending = []

        def send(n):
            stats.sentAt[ids[n]] = now()
            pending.append(client.send(frames[n]))

        await pacing.paced(due, send, now)
        answers = await asyncio.gather(*pending)
    else:
        window = asyncio.Semaphore(args.window)
        answers = []

        def done(answer):
            window.release()

        pending = []
        for frame, envelopeId in zip(frames, ids):
            await window.acquire()
            stats.sentAt[envelopeId] = now()
            answer = client.send(frame)
            answer.add_done_callback(done)
            pending.append(answer)
        answers = await asyncio.gather(*pending)
    for payload in answers:
        if payload[0] != 0:
            refused += 1
            stats.error(f"refused: {payload[1:80]!r}")
    return refused


async def run(args):
    stats = pacing.Stats(pacing.Clock(args.kernel_stamps))
    names = [f"u{n}" for n in range(args.clients)]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    privateDer = key.private_bytes(serialization.Encoding.DER,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    started = time.monotonic()
    sealed = sealAll(privateDer, names[:args.senders], args.room, names, args.bytes,
                     args.messages, args.processes)
    sealing = time.monotonic() - started
    started = time.monotonic()
    clients = await asyncio.wait_for(connectAll(args, stats, names, der), args.timeout)
    setup = time.monotonic() - started
    # JOINED events of the later joiners have arrived by now; nothing else
    # is counted but room messages.
    frames, ids = [], []
    for envelopes in sealed:
        frames.append([opcodes.request(Op.ROOM_MSG, args.room, envelope)
                       for envelope in envelopes])
        ids.append([json.loads(envelope)["id"].encode() for envelope in envelopes])
    expected = args.senders * args.messages * (args.clients - 1)

    def startSenders(first, due):
        return [asyncio.ensure_future(sendAll(client, frames[n], ids[n], stats, args, due[n]))
                for n, client in enumerate(clients[:args.senders])]

    result, senders, timedOut = await pacing.measure(args, stats, clients, expected,
                                                     startSenders)
    refused = sum(await asyncio.gather(*senders)) if not timedOut else -1
    result.update(ok=result["ok"] and refused == 0, tls=args.tls, refused=refused,
                  seal_s=round(sealing, 2), setup_s=round(setup, 2),
                  errors=stats.errors[:5])
    pacing.report(result, f" tls={args.tls} refused={refused}")
    for client in clients:
        client.transport.close()
    return 0 if result["ok"] else 1


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pacing.addLoadArguments(parser, "as fast as --window lets")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--window", type=int, default=32,
                        help="unacknowledged messages per sender at full speed")
    parser.add_argument("--room", default="bench")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes sealing envelopes")
    return pacing.parseLoadArguments(parser, argv)


def main(argv=None):
    return pacing.runLoad(parseArguments(argv), run)


if __name__ == "__main__":
    sys.exit(main())
