"""
File-transfer throughput: a real C{twistd chatd} and real C{python -m chatd.client}
processes on loopback, one sender offering a file of random bytes to a room of N
recipients who all accept it.

    python -m bench.files --window 8 --recipients 5 [--size-mib 50] [--chunk-kib 64]

It prints the sender's result line, the time from the sender's START to the last
recipient's "saved" line (the throughput figure), and the server's peak and
current resident memory before and after, read from /proc: the server relays
chunks without keeping them, so its peak should barely move. Every received file
is compared with the original. It starts and stops everything itself; all
waiting is bounded.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import chatd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__)))


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid):
    """
    The peak (VmHWM) and current (VmRSS) resident memory of process C{pid}.
    """
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f if line.startswith(("VmHWM", "VmRSS")))
    return {key: value.strip() for key, value in fields.items()}


def waitFor(path, text, seconds, processes):
    """
    Wait until the output file C{path} contains C{text}; give up after
    C{seconds}, or as soon as one of C{processes} has failed.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        for process in processes:
            if process.poll() not in (None, 0):
                raise SystemExit("a process exited with %d; see %s" % (process.returncode, path))
        time.sleep(0.05)
    raise SystemExit("no %r in %s within %d s" % (text, path, seconds))


def run(window, recipients, sizeMiB, chunkKiB):
    work = tempfile.mkdtemp(prefix="chatd-bench-files-")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("CHATD_PASSPHRASE", None)
    port = freePort()
    source = os.path.join(work, "big.bin")
    with open(source, "wb") as f:
        for _ in range(sizeMiB):
            f.write(os.urandom(1 << 20))
    with open(os.path.join(work, "server.log"), "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile=-", "chatd", "--data-dir", os.path.join(work, "data"),
             "--binary", "tcp:%d:interface=127.0.0.1" % port, "--text", "none", "--web", "none",
             "--bcrypt-cost", "4", "--window", str(window)],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    clients = []
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)

        def client(name, script):
            path = os.path.join(work, name + ".script")
            with open(path, "w") as f:
                f.write(script)
            with open(os.path.join(work, name + ".out"), "w") as out:
                clients.append(subprocess.Popen(
                    [sys.executable, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                     "--port", str(port), "--home", os.path.join(work, name),
                     "--downloads", os.path.join(work, name + "-downloads"),
                     "--chunk-size", str(chunkKiB), "--script", path],
                    cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out))
            waitFor(os.path.join(work, name + ".out"), "joined #lobby", 60, clients)

        names = ["r%d" % i for i in range(1, recipients + 1)]
        client("alice", "/register alice\n/join lobby\n"
               + "".join('/expect "%s joined" 120\n' % name for name in names)
               + "/file #lobby %s\n/expect delivered 900\n" % source)
        for name in names:
            client(name, '/register %s\n/join lobby\n/expect "file offer #1" 120\n/accept 1\n'
                         '/expect "saved file #1" 900\n' % name)
        before = memory(server.pid)
        waitFor(os.path.join(work, "alice.out"), "recipient", 120, clients)
        start = time.monotonic()
        for name in names:
            waitFor(os.path.join(work, name + ".out"), "saved file #1", 900, clients)
        elapsed = time.monotonic() - start
        after = memory(server.pid)
        for process in clients:
            process.wait(60)
        with open(os.path.join(work, "alice.out")) as f:
            result = next(line for line in f if "delivered" in line).strip()
        with open(source, "rb") as f:
            original = f.read()
        for name in names:
            with open(os.path.join(work, name + "-downloads", "big.bin"), "rb") as f:
                if f.read() != original:
                    raise SystemExit("%s's copy differs from the original" % (name,))
    finally:
        for process in clients + [server]:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        shutil.rmtree(work)
    print("window=%d recipients=%d size=%d MiB chunk=%d KiB"
          % (window, recipients, sizeMiB, chunkKiB))
    print("  sender: %s" % (result,))
    print("  START to last saved: %.2f s = %.1f MiB/s" % (elapsed, sizeMiB / elapsed))
    print("  server memory before: %s; after: %s" % (before, after))


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--chunk-kib", type=int, default=64)
    args = parser.parse_args()
    run(args.window, args.recipients, args.size_mib, args.chunk_kib)


if __name__ == "__main__":
    main()
