"""
What the latency shapes' two load generators share, so that chatd
(L{bench.chatload}) and an IRC server (L{bench.ircpace}) are offered the same
schedule and their deliveries timed the same way.

The schedule. At C{--rate} R a second, sender k's message n is due at
C{start + n / R}; with C{--stagger}, sender k of S starts C{k / (S x R)}
later, so S senders together offer one message every C{1 / (S x R)} seconds
rather than S at once every C{1 / R}. Latency is measured from each message's
actual send time either way: a sender woken late is not charged to the server.

The arrival time. By default a delivery arrives when the generator's event
loop hands its bytes to the protocol: that includes the generator's own
wake-up and the time its one process takes to reach this connection among the
others that became readable with it. With C{--kernel-stamps}, each read
carries the time the kernel queued its bytes on the receiving socket
(C{SO_TIMESTAMPNS}; on loopback, during the server's C{send}), so neither the
generator's wake-up nor its event loop is counted. Several frames read at
once all take the stamp of the newest one: a frame can be charged later than
it arrived, never earlier. The kernel stamps in C{CLOCK_REALTIME}, so send
times are then taken from that clock too (L{Clock}).
"""

import asyncio
import json
import os
import resource
import socket
import struct
import sys
import time

HOST = "127.0.0.1"  # never anywhere else

# Linux's SO_TIMESTAMPNS (and SCM_TIMESTAMPNS, the same number), which the
# socket module does not name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_READ_SIZE = 256 * 1024


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


def raiseFileLimit(needed: int) -> None:
    """
    Raise this process's soft limit on open files to C{needed} if it is
    lower (up to the hard limit): one descriptor per connection.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def startOffset(index: int, senders: int, rate: float, stagger: bool) -> int:
    """
    How many nanoseconds after the common start sender C{index} of
    C{senders} sends its first message: 0 unless C{stagger}.
    """
    if not stagger or not rate:
        return 0
    return round(index * 1e9 / (rate * senders))


def dueTimes(start: int, count: int, rate: float, offset: int):
    """
    The C{count} times (nanoseconds) a sender's messages are due.
    """
    return [start + offset + round(n * 1e9 / rate) for n in range(count)]


async def paced(due, send, clock, sleep=asyncio.sleep):
    """
    Call C{send(n)} for each due time C{due[n]}, not before it, as C{clock}
    tells (C{sleep} waits seconds).
    """
    for n, at in enumerate(due):
        delay = at - clock()
        if delay > 0:
            await sleep(delay / 1e9)
        send(n)


class Clock:
    """
    The generator's one clock: C{time.perf_counter_ns}, or with kernel stamps
    the kernel's own C{CLOCK_REALTIME} (C{time.time_ns}), so that send and
    arrival times compare.
    """

    def __init__(self, kernelStamps: bool) -> None:
        self.kernelStamps = kernelStamps
        self.now = time.time_ns if kernelStamps else time.perf_counter_ns


class StampedTransport:
    """
    The least of an asyncio transport over a connected non-blocking TCP
    socket, reading with C{recvmsg} to get the kernel's receive stamp, which
    asyncio's transports do not pass on. The protocol's
    C{dataArrived(data, arrivedNs)} gets each read and its stamp (or the
    clock's time, for a read the kernel did not stamp; counted in
    C{unstamped}).
    """

    def __init__(self, loop, sock, protocol, clock):
        """
        @param sock: a connected socket, C{SO_TIMESTAMPNS} set before it
            connected (L{connect}), so that nothing the peer sent at once
            arrived unstamped.
        """
        self.loop, self.sock, self.protocol, self.clock = loop, sock, protocol, clock
        self.pending = b""
        self.closed = False
        self.unstamped = 0
        self.space = socket.CMSG_SPACE(_TIMESPEC.size)
        loop.add_reader(sock.fileno(), self._readable)
        protocol.connection_made(self)

    def _readable(self):
        try:
            data, ancillary, _, _ = self.sock.recvmsg(_READ_SIZE, self.space)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lost(error)
            return
        if not data:
            self._lost(None)
            return
        arrived = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                arrived = seconds * 1_000_000_000 + nanoseconds
        if arrived is None:
            self.unstamped += 1
            arrived = self.clock.now()
        self.protocol.dataArrived(data, arrived)

    def write(self, data):
        if self.closed:
            return
        if not self.pending:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._lost(error)
                return
            data = data[sent:]
            if not data:
                return
            self.loop.add_writer(self.sock.fileno(), self._writable)
        self.pending += data

    def _writable(self):
        try:
            sent = self.sock.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lost(error)
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.loop.remove_writer(self.sock.fileno())

    def _lost(self, error):
        if not self.closed:
            self.close()
            self.protocol.connection_lost(error)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self.pending:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()


async def connect(port, protocol, clock, ssl=None):
    """
    Connect C{protocol} to 127.0.0.1:C{port}: through asyncio's own
    transport (over TLS with an C{ssl} context), or through a
    L{StampedTransport} when C{clock} takes the kernel's stamps. Either way
    with C{TCP_NODELAY}, as asyncio sets it.
    """
    loop = asyncio.get_running_loop()
    if not clock.kernelStamps:
        await loop.create_connection(lambda: protocol, HOST, port, ssl=ssl)
        return protocol
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    StampedTransport(loop, sock, protocol, clock)
    return protocol


def _unstamped(clients):
    """
    How many reads of C{clients} (over L{StampedTransport}s) the kernel did
    not stamp.
    """
    return sum(client.transport.unstamped for client in clients)


def parseLoadArguments(parser, argv):
    """
    Parse C{argv}, refusing what cannot run: fewer than two clients, more
    senders than clients, and C{--kernel-stamps} off Linux or over TLS.
    """
    args = parser.parse_args(argv)
    if args.clients < 2 or not 0 < args.senders <= args.clients:
        parser.error("need at least 2 clients and 1 to --clients senders")
    if args.kernel_stamps and not sys.platform.startswith("linux"):
        parser.error("--kernel-stamps needs Linux's SO_TIMESTAMPNS")
    if args.kernel_stamps and getattr(args, "tls", False):
        parser.error("--kernel-stamps reads the socket itself: plain TCP only")
    return args


def runLoad(args, run):
    """
    Run the generator's C{run(args)} on a fresh asyncio loop, with a
    descriptor for each connection.

    @return: its exit status
    """
    raiseFileLimit(args.clients + 64)
    return asyncio.run(run(args))


def addLoadArguments(parser, fullSpeed):
    """
    The options both generators take, with the same meaning: the room's
    shape, its pacing (C{fullSpeed} says what rate 0 means), the bound and
    the server's process.
    """
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200, help="messages per sender")
    parser.add_argument("--bytes", type=int, default=100, help="bytes of text a message")
    parser.add_argument("--rate", type=float, default=0.0,
                        help=f"messages/s per sender; 0 = {fullSpeed}")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for the setup, and again for the measurement")
    parser.add_argument("--server-pid", type=int, default=0,
                        help="read this local process's CPU time from /proc")
    parser.add_argument("--stagger", action="store_true",
                        help="with --rate: sender k of S starts k/S of a period later,"
                        " so the senders' messages come evenly spaced, not together")
    parser.add_argument("--kernel-stamps", action="store_true",
                        help="time each delivery by the kernel's receive stamp"
                        " (SO_TIMESTAMPNS), not by when this process reads it;"
                        " plain TCP on Linux")


class Stats:
    """
    What a run's connections count: deliveries, their latencies (from the
    send times in C{sentAt}, keyed by each message's own id), the last
    arrival, and the first errors.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.received = 0
        self.latencies: list = []
        self.sentAt: dict = {}
        self.lastDelivery = 0
        self.errors: list = []

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


async def measure(args, stats, clients, expected, startSenders):
    """
    The timed part of a run, alike for both generators: C{startSenders(first,
    due)} starts the senders (C{due[k]}: sender k's send times, or C{None} at
    full speed) and returns their tasks; then wait, at most C{--timeout}, for
    the C{expected} deliveries, reading the server's CPU time (C{/proc}) and
    this process's over that span.

    @return: the common fields of the C{RESULT} line, the sender tasks and
        whether the run timed out.
    """
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = proc_cpu_s(args.server_pid)
    # Reads of the setup may come before the kernel has turned stamping on
    # (it does so from a work queue); only the measured span's count.
    unstamped0 = _unstamped(clients) if args.kernel_stamps else 0
    first = stats.clock.now()
    due = [None] * args.senders
    if args.rate:
        due = [dueTimes(first, args.messages, args.rate,
                        startOffset(k, args.senders, args.rate, args.stagger))
               for k in range(args.senders)]
    senders = startSenders(first, due)
    deadline = time.monotonic() + args.timeout
    timedOut = False
    while stats.received < expected:
        if time.monotonic() > deadline:
            timedOut = True
            break
        await asyncio.sleep(0.005)
    server1 = proc_cpu_s(args.server_pid)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = (stats.lastDelivery - first) / 1e9 if stats.received else float("nan")
    latencies = sorted(stats.latencies)
    perClient = [client.received for client in clients]
    result = {
        "ok": not timedOut and stats.received == expected,
        "port": args.port, "clients": args.clients, "senders": args.senders,
        "messages": args.messages, "bytes": args.bytes, "rate": args.rate,
        "stagger": args.stagger, "kernel_stamps": args.kernel_stamps,
        "expected": expected, "received": stats.received, "timed_out": timedOut,
        "wall_s": round(wall, 4),
        "deliveries_per_s": round(stats.received / wall, 1) if wall > 0 else 0,
        "lat_p50_ms": round(percentile(latencies, 50) / 1e6, 3),
        "lat_p99_ms": round(percentile(latencies, 99) / 1e6, 3),
        "lat_max_ms": round(latencies[-1] / 1e6, 3) if latencies else None,
        "min_per_client": min(perClient), "max_per_client": max(perClient),
        "client_cpu_s": round(usage1.ru_utime + usage1.ru_stime
                              - usage0.ru_utime - usage0.ru_stime, 3),
        "errors": stats.errors[:5],
    }
    if args.kernel_stamps:
        result["unstamped_reads"] = _unstamped(clients) - unstamped0
    if server0 is not None:
        result["server_cpu_s"] = round(server1 - server0, 3)
        if stats.received:
            result["server_cpu_ms_per_1000_deliveries"] = round(
                (server1 - server0) * 1e6 / stats.received, 3)
    return result, senders, timedOut


def report(result, extra=""):
    """
    Print a run's summary and its C{RESULT} line (what L{bench.shapes} reads).
    """
    print(f"clients={result['clients']} senders={result['senders']}"
          f" msgs={result['messages']} bytes={result['bytes']}"
          f" rate={result['rate'] or 'unthrottled'} stagger={result['stagger']}"
          f" kernel_stamps={result['kernel_stamps']}{extra}")
    print(f"deliveries: expected {result['expected']} received {result['received']}"
          f"{' (TIMED OUT)' if result['timed_out'] else ''}")
    print(f"latency ms: p50 {result['lat_p50_ms']} p99 {result['lat_p99_ms']}")
    print("RESULT " + json.dumps(result))
