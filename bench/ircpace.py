"""
The room load of L{bench.chatload} on an IRC server (twisted.words', ngircd),
on the same schedule and timed the same way (L{bench.pacing}: C{--rate},
C{--stagger}, C{--kernel-stamps}), so that a latency shape offers both
systems exactly the same thing.

C clients connect to 127.0.0.1:PORT (plain TCP), register (C{PASS} with
C{--password}, C{NICK}, C{USER}), wait for the welcome (001), join one
channel, fresh for each run, and wait for the end of its names (366); then
until nothing has arrived for half a second, so that the JOIN announcements
are not read during the measurement. S of them then each send M PRIVMSGs of
B bytes of text, at C{--rate} messages a second each or as fast as the
socket takes them. A message's text is C{T <sender> <seq> } and padding; its
send time is kept here, in one process with one clock, under those two
numbers, as L{bench.chatload} keeps an envelope's under its id. IRC does not
echo a channel message to its sender, so S x M x (C - 1) deliveries are
expected.

Lines other than channel messages (the welcome, names, PING, errors) are
parsed with twisted.words' own C{irc.parsemsg}. Channel messages, which are
nearly all the traffic, are recognised by hand (the C{" :T "} of their text,
C{PRIVMSG} before it), as C{ircload.py} does: parsing each of some ten
thousand lines a second fully would make the generator's share of the
latency larger than chatload's, which finds an envelope's id in a frame the
same way.

Output: a summary and one line C{RESULT {json}} with the fields of
C{ircload.py} that L{bench.shapes} reads (delivered and expected, latency
p50/p99/max, server CPU per delivery from C{/proc} with C{--server-pid}).
Setup and the measurement are each bounded by C{--timeout}.
"""

import argparse
import asyncio
import json
import random
import string
import sys
import time
from typing import Any

from twisted.words.protocols import irc

from bench import pacing

_MARK = b" :T "
_JOIN_REFUSED = {"403", "405", "432", "433", "464", "465", "471", "473", "474", "475"}


class IRCClient(asyncio.Protocol):
    """
    One IRC client: registration and join awaited, channel messages counted
    and timed.
    """

    def __init__(self, stats, nick, password):
        self.stats = stats
        self.nick = nick
        self.password = password
        self.buffer = b""
        self.transport: Any = None
        self.received = 0
        self.bytesIn = 0
        loop = asyncio.get_running_loop()
        self.welcomed = loop.create_future()
        self.joined = loop.create_future()
        for waiting in (self.welcomed, self.joined):
            # A failure with nobody awaiting (a join never asked for) is in
            # stats.errors already: not a warning as well.
            waiting.add_done_callback(lambda done: done.cancelled() or done.exception())

    def connection_made(self, transport):
        self.transport = transport
        greeting = f"PASS {self.password}\r\n" if self.password else ""
        greeting += f"NICK {self.nick}\r\nUSER {self.nick} 0 * :ircpace\r\n"
        transport.write(greeting.encode())

    def connection_lost(self, exc):
        self._fail(f"{self.nick}: connection lost: {exc!r}")

    def _fail(self, text):
        self.stats.error(text)
        for waiting in (self.welcomed, self.joined):
            if not waiting.done():
                waiting.set_exception(ConnectionError(text))

    def data_received(self, data):
        self.dataArrived(data, self.stats.clock.now())

    def dataArrived(self, data, arrived):
        self.bytesIn += len(data)
        lines = (self.buffer + data).split(b"\r\n")
        self.buffer = lines.pop()
        stats = self.stats
        got = 0
        for line in lines:
            at = line.find(_MARK)
            if at > 0 and b" PRIVMSG " in line[:at]:
                key = line[at + 4:].split(b" ", 2)
                sent = stats.sentAt.get((key[0], key[1])) if len(key) > 2 else None
                if sent is not None:
                    stats.latencies.append(arrived - sent)
                    got += 1
            elif line:
                self._control(line.decode("utf-8", "replace"))
        if got:
            self.received += got
            stats.received += got
            stats.lastDelivery = arrived

    def _control(self, line):
        try:
            _, command, params = irc.parsemsg(line)
        except (irc.IRCBadMessage, IndexError, ValueError):
            self.stats.error(f"{self.nick}: unreadable line {line!r}")
            return
        if command == "PING":
            self.transport.write(f"PONG :{params[-1] if params else ''}\r\n".encode())
        elif command == "001" and not self.welcomed.done():
            self.welcomed.set_result(None)
        elif command == "366" and not self.joined.done():
            self.joined.set_result(None)
        elif command in _JOIN_REFUSED or command == "ERROR":
            self._fail(f"{self.nick}: {line}")
        elif command == "404":
            self.stats.error(f"{self.nick}: {line}")

    def send(self, line):
        self.transport.write(line)


async def connectAll(args, stats, nicks):
    slots = asyncio.Semaphore(args.connect_concurrency)

    async def one(nick):
        async with slots:
            client = await pacing.connect(args.port, IRCClient(stats, nick, args.password),
                                          stats.clock)
            await client.welcomed
            client.send(f"JOIN {args.channel}\r\n".encode())
            await client.joined
            return client

    return await asyncio.gather(*[one(nick) for nick in nicks])


async def settle(clients, quiet=0.5, longest=15.0):
    """
    Wait until nothing has arrived for C{quiet} seconds (at most C{longest}):
    the JOIN announcements are over.
    """
    deadline = time.monotonic() + longest
    last = -1
    while time.monotonic() < deadline:
        seen = sum(client.bytesIn for client in clients)
        if seen == last:
            return True
        last = seen
        await asyncio.sleep(quiet)
    return False


def messageLines(channel, sender, count, size):
    """
    Sender C{sender}'s C{count} PRIVMSG lines, each with C{size} bytes of
    text, and the keys their deliveries are timed by.
    """
    lines, keys = [], []
    for seq in range(count):
        text = f"T {sender} {seq} "
        text += "x" * max(0, size - len(text))
        lines.append(f"PRIVMSG {channel} :{text}\r\n".encode())
        keys.append((str(sender).encode(), str(seq).encode()))
    return lines, keys


async def sendAll(client, lines, keys, stats, due):
    """
    Send one sender's lines at the C{due} times, or (C{None}) all at once,
    yielding to the readers every 16 lines.
    """
    now = stats.clock.now

    def send(n):
        stats.sentAt[keys[n]] = now()
        client.send(lines[n])

    if due is not None:
        await pacing.paced(due, send, now)
        return
    for n in range(len(lines)):
        send(n)
        if n % 16 == 15:
            await asyncio.sleep(0)


async def run(args):
    stats = pacing.Stats(pacing.Clock(args.kernel_stamps))
    tag = "".join(random.choice(string.ascii_lowercase) for _ in range(4))
    args.channel = args.channel or f"#pace{tag}"
    nicks = [f"{tag}{n}" for n in range(args.clients)]
    started = time.monotonic()
    try:
        clients = await asyncio.wait_for(connectAll(args, stats, nicks), args.timeout)
    except (OSError, asyncio.TimeoutError, ConnectionError) as error:
        print(f"setup failed: {error!r}; {stats.errors[:5]}")
        print("RESULT " + json.dumps({"ok": False, "error": repr(error),
                                      "errors": stats.errors[:5]}))
        return 2
    settled = await settle(clients)
    setup = time.monotonic() - started
    stats.latencies.clear()
    stats.received = 0
    for client in clients:
        client.received = 0
    messages = [messageLines(args.channel, n, args.messages, args.bytes)
                for n in range(args.senders)]
    expected = args.senders * args.messages * (args.clients - 1)

    def startSenders(first, due):
        return [asyncio.ensure_future(sendAll(client, *messages[n], stats, due[n]))
                for n, client in enumerate(clients[:args.senders])]

    result, senders, timedOut = await pacing.measure(args, stats, clients, expected,
                                                     startSenders)
    for sender in senders:
        sender.cancel()
    result.update(setup_s=round(setup, 2), settled=settled)
    pacing.report(result)
    for client in clients:
        client.send(b"QUIT :done\r\n")
        client.transport.close()
    return 0 if result["ok"] else 1


def parseArguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pacing.addLoadArguments(parser, "as fast as the socket takes them")
    parser.add_argument("--password", help="sent with PASS before NICK")
    parser.add_argument("--channel", help="default: a new #pace<tag> for each run")
    parser.add_argument("--connect-concurrency", type=int, default=20)
    return pacing.parseLoadArguments(parser, argv)


def main(argv=None):
    return pacing.runLoad(parseArguments(argv), run)


if __name__ == "__main__":
    sys.exit(main())
