"""
One command for the published comparison: room fan-out shapes and latency
shapes, on chatd (one or more source trees, each store asked for, plain and
TLS) and on twisted.words' IRC server, in one run, the systems interleaved,
each shape run C{--runs} times, each run on a fresh server.

chatd's load is L{bench.chatload}; the IRC peer's is the lead's C{ircload.py}
and twisted.words is started from the lead's C{twisted_words_bench.tac}, both
by path (C{--ircload}, C{--words-tac}), never copied here. Shapes with a
pacing (C{lat50e}, C{lat1e}, C{NAME+stagger}, C{NAME+stamps}: L{bench.pacing})
run the IRC peer with L{bench.ircpace} instead, which takes the same pacing
options as L{bench.chatload}, so both systems get the same. Each load generator
reads the server's CPU time from C{/proc} over the send phase, so "server CPU
per delivery" is the same figure for every system. Absolute times on a shared
machine drift: compare within one run, and read the load average printed
beside it.

    python -m bench.shapes --chatd now=. --store sqlite --store memory \\
        --words-tac ../shared/bench/twisted_words_bench.tac \\
        --ircload ../shared/bench/ircload.py --shape a --shape d --runs 3
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"

# clients, senders, messages per sender, plaintext bytes, messages/s per
# sender (0: as fast as the window lets), idle connections beside the room,
# the pacing options given to both load generators (bench.pacing).
SHAPES = {
    "a": (50, 5, 200, 100, 0, 0, ()),
    "b": (200, 10, 100, 100, 0, 0, ()),
    "c": (500, 2, 100, 100, 0, 0, ()),
    "d": (200, 10, 1000, 100, 0, 0, ()),
    # A 50-member room offered 200 messages a second, and one sender at 5.
    "lat50": (50, 10, 100, 100, 20, 0, ()),
    "lat1": (50, 1, 50, 100, 5, 0, ()),
    # The same, the senders' messages evenly spaced (one every 5 ms in
    # lat50) and each delivery timed by the kernel's receive stamp.
    "lat50e": (50, 10, 100, 100, 20, 0, ("--stagger", "--kernel-stamps")),
    "lat1e": (50, 1, 50, 100, 5, 0, ("--stagger", "--kernel-stamps")),
}
# NAME+MODIFIER: a shape with one more pacing option.
PACINGS = {"stagger": "--stagger", "stamps": "--kernel-stamps"}


def parseShape(text):
    """
    A shape by name, or one of them with 1/K of its messages (C{d/5}), or
    C{room:N} (N clients, one sender at 20 messages a
    second, 300 messages) or C{conns:N} (the lat50 room beside N idle
    connections), or C{C,S,M,B,RATE}; any of them followed by C{+stagger}
    or C{+stamps} (L{PACINGS}) to add that pacing option.
    """
    base, *modifiers = text.split("+")
    if any(modifier not in PACINGS for modifier in modifiers):
        raise argparse.ArgumentTypeError(
            f"{text!r}: after + comes one of {', '.join(sorted(PACINGS))}")
    shape = _baseShape(base)
    if shape is None:
        raise argparse.ArgumentTypeError(f"unknown shape {text!r}")
    options = list(shape[6])
    for modifier in modifiers:
        if PACINGS[modifier] not in options:
            options.append(PACINGS[modifier])
    if "--stagger" in options and not shape[4]:
        raise argparse.ArgumentTypeError(f"{text!r}: +stagger needs a rate")
    return text, shape[:6] + (tuple(options),)


def _baseShape(text):
    """
    The shape C{text} names without its C{+} modifiers, or C{None}.
    """
    if text in SHAPES:
        return SHAPES[text]
    name, _, divisor = text.partition("/")
    if name in SHAPES and divisor.isdigit() and int(divisor) > 0:
        # A named shape with fewer messages per sender, to fit a busy machine.
        c, s, m, b, rate, idle, options = SHAPES[name]
        return (c, s, max(1, m // int(divisor)), b, rate, idle, options)
    kind, _, number = text.partition(":")
    if kind == "room" and number.isdigit():
        return (int(number), 1, 300, 100, 20, 0, ())
    if kind == "conns" and number.isdigit():
        return SHAPES["lat50"][:5] + (int(number), ())
    fields = text.split(",")
    if len(fields) == 5 and all(field.replace(".", "").isdigit() for field in fields):
        c, s, m, b, rate = fields
        return (int(c), int(s), int(m), int(b), float(rate), 0, ())
    return None


def parseChatd(text):
    """
    C{LABEL=TREE}, or C{LABEL=TREE@STORE,...} to measure that tree on those
    stores only (rather than on every C{--store}).
    """
    label, _, tree = text.partition("=")
    tree, _, stores = tree.partition("@")
    if not tree or not os.path.isdir(os.path.join(tree, "chatd")):
        raise argparse.ArgumentTypeError(f"{text!r}: give LABEL=TREE, a chatd source tree")
    stores = stores.split(",") if stores else None
    if stores and not set(stores) <= {"sqlite", "memory"}:
        raise argparse.ArgumentTypeError(f"{text!r}: the stores are sqlite and memory")
    return label, os.path.abspath(tree), stores


def freePort():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def waitForPort(port, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection((HOST, port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


class Server:
    """
    One fresh server process, stopped when the block ends.
    """

    def __init__(self, command, env, port, cwd):
        self.command, self.env, self.port, self.cwd = command, env, port, cwd
        self.cpus = None

    def __enter__(self):
        self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=onCPUs(self.cpus))
        waitForPort(self.port, self.process)
        return self

    def rss(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def twistd(python):
    """
    The twistd script beside C{python} (the virtualenv's).
    """
    return os.path.join(os.path.dirname(python), "twistd")


def chatdServer(tree, store, tls, scratch, python):
    port = freePort()
    data = tempfile.mkdtemp(prefix="data-", dir=scratch)
    listener = f"ssl:{port}" if tls else f"tcp:{port}"
    command = [
        twistd(python), "-n", "--pidfile=", f"--logfile={data}/twistd.log",
        "chatd", "--data-dir", data,
        "--binary", f"{listener}:interface={HOST}", "--text", "none", "--web", "none",
        "--rate-limit", "1000000/1", "--bcrypt-cost", "4",
        "--join-limit", "1000000/1", "--join-address-limit", "1000000/1",
        "--address-limit", "1000000/1", "--login-limit", "1000000/1",
        "--address-connections", "1000000", "--send-budget", "1073741824",
        "--idle-warning", "3000", "--idle-timeout", "3600",
    ]
    if store == "memory":
        command += ["--db", "memory:"]
    env = dict(os.environ, PYTHONPATH=tree)
    return Server(command, env, port, tree)


def wordsServer(tac, scratch, python):
    port = freePort()
    command = [twistd(python), "-n", "--pidfile=", f"--logfile={scratch}/words.log",
               "-y", tac]
    return Server(command, dict(os.environ, WORDS_PORT=str(port)), port, scratch)


def onCPUs(cpus):
    """
    What a child process runs before its program when it is to run on
    C{cpus} only (a set of CPU numbers): L{None} for anywhere.
    """
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def pinning(pin):
    """
    The CPUs of the server and of the load generator: with C{pin}, the
    server has the first CPU this process may use to itself and the
    generator the others, as when the clients are other machines; else both
    may run anywhere.
    """
    if not pin:
        return None, None
    everything = sorted(os.sched_getaffinity(0))
    if len(everything) < 2:
        raise SystemExit("--pin needs two CPUs or more")
    return {everything[0]}, set(everything[1:])


def load(command, timeout, cpus=None):
    """
    Run a load generator (on C{cpus}, when given); its C{RESULT} line as a dict.
    """
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=onCPUs(cpus))
    return parseResult(done.stdout, done.stderr)


def parseResult(stdout, stderr=""):
    """
    The C{RESULT {json}} line a load generator printed, as a dict; or a
    failed run saying what it printed last.
    """
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"ok": False, "error": (stderr or stdout)[-400:]}


def idleConnections(kind, port, count):
    """
    Open C{count} connections that greet (as a chatd client or an IRC one)
    and stay: the room's neighbours in the C{conns:N} shapes. (Plain TCP
    only.)
    """
    from chatd.protocols import opcodes
    from chatd.protocols.opcodes import Op
    sockets = []
    for n in range(count):
        connection = socket.create_connection((HOST, port))
        if kind == "words":
            greeting = b"PASS bench\r\nNICK idle%d\r\nUSER idle%d 0 * :i\r\n" % (n, n)
            connection.sendall(greeting)
        else:
            connection.sendall(opcodes.request(Op.HELLO))
        sockets.append(connection)
    return sockets


def runOne(system, shape, args, scratch):
    """
    One run of C{shape} on a fresh server of C{system}.
    """
    kind, label, detail = system
    clients, senders, messages, size, rate, idle, options = shape
    python = sys.executable
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if kind == "chatd" and detail[2] and "--kernel-stamps" in options:
        return {"ok": False, "error": "--kernel-stamps reads the socket itself:"
                " plain TCP only, not TLS"}
    if kind == "words":
        server = wordsServer(args.words_tac, scratch, python)
    else:
        tree, store, tls = detail
        server = chatdServer(tree, store, tls, scratch, python)
    server.cpus, generatorCPUs = pinning(args.pin)
    with server:
        held = idleConnections(kind, server.port, idle) if idle and not (
            kind == "chatd" and detail[2]) else []
        try:
            if kind == "words" and options:
                command = [python, "-m", "bench.ircpace", "--port", str(server.port),
                           "--password", "bench"]
            elif kind == "words":
                command = [python, args.ircload, "--port", str(server.port),
                           "--password", "bench"]
            else:
                command = [python, "-m", "bench.chatload", "--port", str(server.port),
                           "--processes", str(args.processes)]
                if detail[2]:
                    command.append("--tls")
            command += ["--clients", str(clients), "--senders", str(senders),
                        "--messages", str(messages), "--bytes", str(size),
                        "--rate", str(rate), "--timeout", str(args.timeout),
                        "--server-pid", str(server.process.pid), *options]
            result = load(command, args.timeout * 3, generatorCPUs)
            result["rss_kib"] = server.rss()
        finally:
            for connection in held:
                connection.close()
    result["cwd"] = here
    return result


def systems(args):
    found: list = []
    for label, tree, stores in args.chatd:
        for store in stores or args.store:
            for tls in ([False, True] if args.tls else [False]):
                name = f"chatd {label} {store}{' tls' if tls else ''}"
                found.append(("chatd", name, (tree, store, tls)))
    if args.words_tac:
        found.append(("words", "twisted.words", None))
    return found


def median(runs, field):
    """
    The median of C{field} over C{runs}, or NaN when none has it.
    """
    values = [run[field] for run in runs if run.get(field) is not None]
    return statistics.median(values) if values else float("nan")


def summarise(results, out):
    """
    Per shape and system: the median of the runs' server CPU per delivery,
    deliveries a second, p50 and p99, and the ratio to twisted.words.
    """
    print(f"\nload average at the end: {os.getloadavg()}", file=out)
    for shape, bySystem in results.items():
        print(f"\nshape {shape}:", file=out)
        print(f"  {'system':34} {'us/delivery':>12} {'deliv/s':>10} {'p50 ms':>8}"
              f" {'p99 ms':>8} {'runs ok':>7} {'vs words':>8}", file=out)
        words = None
        rows = []
        for name, runs in bySystem.items():
            good = [run for run in runs if run.get("ok")]
            cpu = [run["server_cpu_ms_per_1000_deliveries"] for run in good
                   if "server_cpu_ms_per_1000_deliveries" in run]
            med = statistics.median(cpu) if cpu else float("nan")
            if name == "twisted.words":
                words = med
            rows.append((name, med, good, runs))
        for name, med, good, runs in rows:
            ratio = med / words if words else float("nan")
            print(f"  {name:34} {med:12.2f} {median(good, 'deliveries_per_s'):10.0f}"
                  f" {median(good, 'lat_p50_ms'):8.2f} {median(good, 'lat_p99_ms'):8.2f}"
                  f" {len(good)}/{len(runs):<5} {ratio:8.2f}", file=out)
            for run in runs:
                if not run.get("ok"):
                    print(f"    failed run: {json.dumps(run)[:300]}", file=out)


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chatd", type=parseChatd, action="append", default=[],
                        help="LABEL=TREE[@STORE,...]: a chatd source tree to measure"
                        " (repeatable)")
    parser.add_argument("--store", action="append", choices=["sqlite", "memory"],
                        help="chatd store(s) [sqlite]")
    parser.add_argument("--tls", action="store_true",
                        help="measure each chatd over TLS too")
    parser.add_argument("--words-tac", help="twisted_words_bench.tac, by path")
    parser.add_argument("--ircload", help="ircload.py, by path (with --words-tac, for"
                        " the shapes without a pacing)")
    parser.add_argument("--shape", type=parseShape, action="append",
                        help="a, b, c, d, lat50, lat1, lat50e, lat1e (NAME/K: 1/K of the"
                        " messages), room:N, conns:N or C,S,M,B,RATE; +stagger, +stamps"
                        " add a pacing [all the named shapes]")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pin", action="store_true",
                        help="run each server on the first CPU alone and the load"
                        " generator on the others")
    parser.add_argument("--json", help="write every run's result here")
    args = parser.parse_args(argv)
    if not args.chatd:
        args.chatd = [parseChatd("chatd=.")]
    args.store = args.store or ["sqlite"]
    args.shape = args.shape or [parseShape(name) for name in SHAPES]
    if args.ircload and not args.words_tac:
        parser.error("--ircload goes with --words-tac")
    if args.words_tac and not args.ircload and any(
            not shape[6] for _, shape in args.shape):
        parser.error("--words-tac needs --ircload for the shapes without a pacing")
    return args


def main(argv=None):
    args = parseArguments(argv)
    # Stopped from outside, stop the server being measured too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    scratch = tempfile.mkdtemp(prefix="chatd-shapes-")
    results: dict = {}
    try:
        for run in range(1, args.runs + 1):
            for shapeName, shape in args.shape:
                for system in systems(args):
                    result = runOne(system, shape, args, scratch)
                    results.setdefault(shapeName, {}).setdefault(system[1], []).append(result)
                    print(f"run {run} shape {shapeName} {system[1]}:"
                          f" {result.get('server_cpu_ms_per_1000_deliveries')} us/delivery,"
                          f" p50 {result.get('lat_p50_ms')} p99 {result.get('lat_p99_ms')} ms,"
                          f" ok {result.get('ok')}, load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summarise(results, sys.stdout)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
