"""
Load measurements against running chatd servers, over the binary protocol and
the WebSocket door.

The tool starts no server: it connects to the addresses given with C{--server}
or C{--nodes}, so that each server runs with exactly the options being measured
(see C{bench/README.rst}) and its memory and CPU time can be read from outside
(C{--pid}).

Subcommands, each in a module of its own (this one is only the command line):

    throughput  room messages per second acknowledged by the server, one at a
                time and then pipelined, and the rate at which a second
                member receives them (L{bench.throughput})
    idle        server memory per idle connection (L{bench.idle})
    websocket   room messages per second delivered to many WebSocket clients
                in one room (L{bench.wsload})
    cluster     room messages per second delivered through one or more nodes
                of a cluster, over the binary protocol (L{bench.clusterload})

What they share: the binary client (L{bench.benchclient}), the server's
memory and CPU time from C{/proc} (L{bench.procstat}), keys and envelopes made
before the clock starts (L{bench.prepared}), timing delivery to many receivers
(L{bench.delivery}) and the command line's types (L{bench.command}).

Frames are built and read with L{chatd.protocols.opcodes} (binary) and
L{chatd.protocols.jsonwire} (WebSocket), and envelopes sealed with
L{chatd.e2e.seal}, the same code the server and its clients run, so the tool
measures the real protocol rather than an imitation of it.

Run it from the repository root: C{.venv/bin/python -m bench.load --help}.
"""

import argparse
import os

from twisted.internet import task
from twisted.internet.defer import Deferred

from bench.clusterload import cluster
from bench.command import atLeast, main, serverAddress, webSocketURL
from bench.idle import idle
from bench.throughput import throughput
from bench.wsload import websocket


def parseArguments(argv=None):
    """
    The command line: a subcommand and its options, with the function that
    runs it as C{run}.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--timeout", type=float, default=300,
                        help="seconds any one step may take [%(default)s]")
    common = argparse.ArgumentParser(add_help=False, parents=[timing])
    common.add_argument("--server", type=serverAddress, required=True,
                        help="HOST:PORT of a chatd binary listener on plain TCP")

    # What the websocket and cluster measurements share.
    fanout = argparse.ArgumentParser(add_help=False, parents=[timing])
    fanout.add_argument("--window", type=atLeast(1), default=64,
                        help="messages outstanding, unacknowledged [%(default)s]")
    fanout.add_argument("--size", type=atLeast(1), default=64,
                        help="plaintext bytes per message [%(default)s]")
    fanout.add_argument("--processes", type=atLeast(1), default=os.cpu_count() or 1,
                        help="worker processes making keys and sealing envelopes"
                             " before the clock starts [%(default)s]")
    fanout.add_argument("--pid", type=int, action="append", default=[],
                        help="report the CPU time of this process and its children"
                             " (a server, redis-server, the postmaster) over the timed"
                             " run; repeatable")

    tp = commands.add_parser("throughput", parents=[common],
                             help="room messages per second, sequential and pipelined")
    tp.add_argument("--count", type=atLeast(1), default=5000,
                    help="messages per run [%(default)s]")
    tp.add_argument("--window", type=atLeast(1), default=64,
                    help="requests outstanding when pipelining [%(default)s]")
    tp.add_argument("--size", type=atLeast(1), default=64,
                    help="plaintext bytes per message [%(default)s]")
    tp.add_argument("--room", default="bench", help="room to use [%(default)s]")
    tp.add_argument("--name", default="bench",
                    help="nickname prefix; NAME-tx sends, NAME-rx receives [%(default)s]")
    tp.set_defaults(run=throughput)

    idl = commands.add_parser("idle", parents=[common],
                              help="server memory per idle connection")
    idl.add_argument("--pid", type=int, required=True, help="the server's process id")
    idl.add_argument("--connections", type=atLeast(1), default=1000,
                     help="connections to hold [%(default)s]")
    idl.add_argument("--rooms", type=atLeast(0), default=10,
                     help="rooms to spread them over, 0 for none [%(default)s]")
    idl.add_argument("--room", default="idle",
                     help="room name prefix; rooms are ROOM-0, ROOM-1... [%(default)s]")
    idl.add_argument("--settle", type=float, default=35,
                     help="seconds to hold them before reading the RSS; longer than"
                          " the server's idle timeout shows heartbeats keep them"
                          " [%(default)s]")
    idl.add_argument("--tls", action="store_true",
                     help="connect with TLS (to an ssl: listener)")
    idl.add_argument("--parallel", type=atLeast(1), default=50,
                     help="connections being set up at once [%(default)s]")
    idl.set_defaults(run=idle)

    ws = commands.add_parser("websocket", parents=[fanout],
                             help="deliveries per second to many WebSocket clients in a room")
    ws.add_argument("--server", type=webSocketURL, required=True,
                    help="http://HOST:PORT of a chatd web listener (--web); the tool"
                         " connects to ws://HOST:PORT/ws")
    ws.add_argument("--clients", type=atLeast(1), default=100,
                    help="receiving clients, each a registered account; one more"
                         " sends [%(default)s]")
    ws.add_argument("--messages", type=atLeast(1), default=1000,
                    help="messages sent [%(default)s]")
    ws.add_argument("--room", default="wsbench",
                    help="room name prefix; the room is ROOM-TAG, TAG new each run"
                         " [%(default)s]")
    ws.add_argument("--name", default="ws",
                    help="account name prefix, at most 16 characters; accounts are"
                         " NAMETAG-tx and NAMETAG-0... [%(default)s]")
    ws.add_argument("--parallel", type=atLeast(1), default=20,
                    help="accounts being registered at once [%(default)s]")
    ws.set_defaults(run=websocket)

    cl = commands.add_parser("cluster", parents=[fanout],
                             help="deliveries per second through the nodes of a cluster")
    cl.add_argument("--nodes", type=serverAddress, nargs="+", required=True,
                    metavar="HOST:PORT",
                    help="a binary listener (plain TCP) of each node; the sender uses"
                         " the first")
    cl.add_argument("--receivers", type=atLeast(1), default=30,
                    help="receiving guests, spread round robin over the nodes"
                         " [%(default)s]")
    cl.add_argument("--messages", type=atLeast(1), default=2000,
                    help="messages sent [%(default)s]")
    cl.add_argument("--room", default="clbench",
                    help="room name prefix; the room is ROOM-TAG [%(default)s]")
    cl.add_argument("--name", default="cl",
                    help="guest name prefix, at most 20 characters [%(default)s]")
    cl.set_defaults(run=cluster)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parseArguments()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
