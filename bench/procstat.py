"""
What the kernel says of a server process, read from C{/proc} so that it needs
nothing from the server: its resident memory, its open-file limit, and the CPU
time it and its children have used; and this process's own open-file limit.
"""

import os
import resource
import time

from bench.benchclient import BenchError


def procLine(pid, filename, prefix):
    """
    The words after C{prefix} on its line of C{/proc/PID/FILENAME}: the
    kernel's own account of the server process, which needs nothing from it.
    """
    path = f"/proc/{pid}/{filename}"
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line[len(prefix):].split()
    except FileNotFoundError:
        raise BenchError(f"no process {pid}: is the server running?") from None
    raise BenchError(f"no {prefix!r} line in {path}")


def serverRSS(pid):
    """
    The server's resident memory in KiB.
    """
    return int(procLine(pid, "status", "VmRSS:")[0])


def serverOpenFileLimit(pid):
    """
    The server's soft limit on open files.
    """
    soft = procLine(pid, "limits", "Max open files")[0]
    return resource.RLIM_INFINITY if soft == "unlimited" else int(soft)


def raiseOpenFileLimit(needed):
    """
    Let this process hold C{needed} descriptors, raising its soft limit as far
    as the hard limit allows; a default soft limit of 1024 is too few for a
    thousand connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"need {needed} open files but the hard limit is {hard};"
                             " raise it (ulimit -Hn) first")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        print(f"raised this process's open-file limit from {soft} to {needed}")


def processTreeCPU(pid):
    """
    The CPU seconds (user and system) that process C{pid} and every process
    below it have used so far, from C{/proc}: a PostgreSQL server's work is
    done by the postmaster's children, one per connection.

    Children already reaped are counted in their parent's C{cutime} and
    C{cstime}, which are added too, so nothing that ends mid-run is lost.
    """
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # gone since the listing
        # The command name, in parentheses, may hold spaces; fields follow it.
        fields = text[text.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = sum(int(value) for value in fields[11:15])
    if pid not in used:
        raise BenchError(f"no process {pid}")
    total = 0
    for child, ticks in used.items():
        ancestor = child
        for _ in range(64):
            if ancestor == pid:
                total += ticks
                break
            ancestor = parents.get(ancestor, 0)
            if ancestor <= 1:
                break
    return total / os.sysconf("SC_CLK_TCK")


def processName(pid):
    """
    The command name of C{pid} (C{twistd}, C{redis-server}, C{postgres}), or
    C{"pid"} when it is gone.
    """
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "pid"


def cpuSnapshot(pids):
    """
    CPU seconds used so far by this process and by each of C{pids} (with
    their children), to tell afterwards which of them the run kept busy.
    """
    return [time.process_time()] + [processTreeCPU(pid) for pid in pids]


def cpuReport(before, after, pids, elapsed):
    """
    One line: the CPU seconds each process used over C{elapsed} wall seconds,
    and that as a share of one CPU. A share near 100 % names the bottleneck:
    the Python work of a server, and of this client, runs on one thread.
    """
    labels = ["this client"] + [f"{processName(pid)} {pid}" for pid in pids]
    parts = [f"{label} {end - begin:.1f} s ({(end - begin) / elapsed:.0%})"
             for label, begin, end in zip(labels, before, after)]
    return f"CPU over those {elapsed:.2f} s: " + ", ".join(parts)
