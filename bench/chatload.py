"""
The room fan-out load of C{ircload.py} (the IRC peers' generator in the lead's
bench material), on chatd's binary door with real end-to-end envelopes, so
that chatd and an IRC server are measured on the same shape.

C guests connect to 127.0.0.1:PORT (plain TCP or, with C{--tls}, TLS), greet,
take the names C{u0}, C{u1}... and join one room. S of them then each send M
room messages of B bytes of plaintext, at full speed (at most C{--window}
unacknowledged each) or at C{--rate} messages a second each. Every client
reads everything; latency is the arrival time minus the send time of the
envelope (one process, one clock). chatd does not echo a room message to its
sender, so S x M x (C - 1) deliveries are expected, each exactly once.

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
import resource
import ssl
import struct
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatd import e2e
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op

HOST = "127.0.0.1"  # never anywhere else
_LENGTH = struct.Struct(">I")
_ID_FIELD = b'"id":"'
now_ns = time.perf_counter_ns


def proc_cpu_s(pid):
    """
    The user and system CPU seconds process C{pid} has used, from C{/proc}.
    """
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered, p):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class Stats:
    def __init__(self):
        self.received = 0
        self.latencies = []
        self.sentAt = {}
        self.lastDelivery = 0
        self.errors = []


class ChatClient(asyncio.Protocol):
    """
    One guest: requests answered in order, room messages counted and timed.
    """

    def __init__(self, stats):
        self.stats = stats
        self.buffer = b""
        self.answers = []
        self.transport = None
        self.received = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if len(self.stats.errors) < 20:
            self.stats.errors.append(f"connection lost: {exc!r}")
        for answer in self.answers:
            if not answer.done():
                answer.set_exception(ConnectionError("connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data):
        arrived = now_ns()
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
    out = {sender: [] for sender in senders}
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        for sender, sealed in zip(owners, pool.map(_seal, jobs)):
            out[sender].extend(sealed)
    return [out[sender] for sender in senders]


async def connectAll(args, stats, names, der):
    loop = asyncio.get_running_loop()
    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    slots = asyncio.Semaphore(args.connect_concurrency)

    async def one(name):
        async with slots:
            _, client = await loop.create_connection(
                lambda: ChatClient(stats), HOST, args.port, ssl=context)
            await client.ok(Op.HELLO)
            await client.ok(Op.NICK, name)
            await client.ok(Op.SET_KEY, der)
            await client.ok(Op.JOIN, args.room, "")
            return client

    return await asyncio.gather(*[one(name) for name in names])


async def sendAll(client, frames, ids, stats, args):
    """
    Send one sender's frames at C{--rate} a second, or as fast as a window
    of C{--window} unacknowledged messages lets them go.
    """
    refused = 0
    if args.rate:
        period = 1e9 / args.rate
        start = now_ns()
        pending = []
        for n, (frame, envelopeId) in enumerate(zip(frames, ids)):
            delay = (start + n * period - now_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            stats.sentAt[envelopeId] = now_ns()
            pending.append(client.send(frame))
        answers = await asyncio.gather(*pending)
    else:
        window = asyncio.Semaphore(args.window)
        answers = []

        def done(answer):
            window.release()

        pending = []
        for frame, envelopeId in zip(frames, ids):
            await window.acquire()
            stats.sentAt[envelopeId] = now_ns()
            answer = client.send(frame)
            answer.add_done_callback(done)
            pending.append(answer)
        answers = await asyncio.gather(*pending)
    for payload in answers:
        if payload[0] != 0:
            refused += 1
            if len(stats.errors) < 20:
                stats.errors.append(f"refused: {payload[1:80]!r}")
    return refused


async def run(args):
    stats = Stats()
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
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = proc_cpu_s(args.server_pid)
    first = now_ns()
    senders = [asyncio.ensure_future(sendAll(client, frames[n], ids[n], stats, args))
               for n, client in enumerate(clients[:args.senders])]
    deadline = time.monotonic() + args.timeout
    timedOut = False
    while stats.received < expected:
        if time.monotonic() > deadline:
            timedOut = True
            break
        await asyncio.sleep(0.005)
    server1 = proc_cpu_s(args.server_pid)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    refused = sum(await asyncio.gather(*senders)) if not timedOut else -1
    wall = (stats.lastDelivery - first) / 1e9 if stats.received else float("nan")
    latencies = sorted(stats.latencies)
    perClient = [client.received for client in clients]
    result = {
        "ok": not timedOut and stats.received == expected and refused == 0,
        "port": args.port, "tls": args.tls, "clients": args.clients,
        "senders": args.senders, "messages": args.messages, "bytes": args.bytes,
        "rate": args.rate, "expected": expected, "received": stats.received,
        "refused": refused, "timed_out": timedOut, "wall_s": round(wall, 4),
        "deliveries_per_s": round(stats.received / wall, 1) if wall > 0 else 0,
        "lat_p50_ms": round(percentile(latencies, 50) / 1e6, 3),
        "lat_p99_ms": round(percentile(latencies, 99) / 1e6, 3),
        "lat_max_ms": round(latencies[-1] / 1e6, 3) if latencies else None,
        "min_per_client": min(perClient), "max_per_client": max(perClient),
        "seal_s": round(sealing, 2), "setup_s": round(setup, 2),
        "client_cpu_s": round(usage1.ru_utime + usage1.ru_stime
                              - usage0.ru_utime - usage0.ru_stime, 3),
        "errors": stats.errors[:5],
    }
    if server0 is not None:
        result["server_cpu_s"] = round(server1 - server0, 3)
        if stats.received:
            result["server_cpu_ms_per_1000_deliveries"] = round(
                (server1 - server0) * 1e6 / stats.received, 3)
    print(f"clients={args.clients} senders={args.senders} msgs={args.messages}"
          f" bytes={args.bytes} rate={args.rate or 'unthrottled'} tls={args.tls}")
    print(f"deliveries: expected {expected} received {stats.received}"
          f"{' (TIMED OUT)' if timedOut else ''}; refused {refused}")
    print(f"latency ms: p50 {result['lat_p50_ms']} p99 {result['lat_p99_ms']}")
    print("RESULT " + json.dumps(result))
    for client in clients:
        client.transport.close()
    return 0 if result["ok"] else 1


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200, help="messages per sender")
    parser.add_argument("--bytes", type=int, default=100, help="plaintext bytes a message")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="messages/s per sender; 0 = as fast as --window lets")
    parser.add_argument("--window", type=int, default=32,
                        help="unacknowledged messages per sender at full speed")
    parser.add_argument("--room", default="bench")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes sealing envelopes")
    parser.add_argument("--server-pid", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parseArguments(argv)
    needed = args.clients + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
