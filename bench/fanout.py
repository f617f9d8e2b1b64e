"""
The fan-out's CPU per delivery, in one process, without the network.

One guest posts room messages, through the binary door's C{dataReceived}, to a
room of N binary-door guests on the memory store; every other guest's door
writes its frame to a transport that only keeps count. What is timed is
everything chatd does for a message in the reactor's thread (the door, the
envelope's parse and checks, the signature, the store, the cut per reader,
the frame, the outbox), and nothing of the kernel's or Twisted's reactor.
It is the figure to watch while tuning the fan-out: on a machine shared with
other work it varies far less than the shapes of L{bench.shapes}, which
measure the whole server beside twisted.words.

    PYTHONPATH=$PWD python -m bench.fanout --members 200 --messages 300

Prints the CPU time per delivery (the best of ten slices of the messages,
C{time.process_time}) and the bytes written per delivery.
"""

import argparse
import json
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from chatd import e2e
from chatd.config import Settings
from chatd.core.service import ChatService
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.store.seal import AtRestKeys, generateKey

# Limits out of the way: every guest comes from one address and the sender
# posts as fast as the loop runs.
_UNLIMITED = (10 ** 9, 1.0)


class CountingTransport:
    """
    A transport that counts what it is given and keeps none of it.
    """

    disconnecting = False
    connected = True

    def __init__(self) -> None:
        self.written = 0
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, pieces) -> None:
        self.written += sum(map(len, pieces))

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)

    def registerProducer(self, producer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass


def room(members: int):
    """
    A started service, and the binary doors of C{members} guests named
    C{u0}... that share one RSA key and joined the room C{#bench}.

    @return: the service, the doors and the guests' private key.
    """
    clock = Clock()
    clock.advance(time.time())
    settings = Settings(bcryptCost=4, rateLimit=_UNLIMITED, loginLimit=_UNLIMITED,
                        addressLimit=_UNLIMITED, joinLimit=_UNLIMITED,
                        joinAddressLimit=_UNLIMITED, addressConnections=10 ** 6)
    service = ChatService(MemoryStore(AtRestKeys([generateKey()]), clock), settings, clock)
    service.startService()
    factory = BinaryFactory(service)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    doors = []
    for n in range(members):
        door = factory.buildProtocol(None)
        door.makeConnection(CountingTransport())
        for frame in (opcodes.request(Op.HELLO), opcodes.request(Op.NICK, f"u{n}"),
                      opcodes.request(Op.SET_KEY, der), opcodes.request(Op.JOIN, "#bench", "")):
            door.dataReceived(frame)
        doors.append(door)
    return service, doors, key


def envelopes(service, key, members: int, messages: int, size: int):
    """
    C{messages} ROOM_MSG request frames from C{u0}, each sealed once and
    given the one wrapped key for every member (the server cannot tell).
    """
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    names = [f"u{n}" for n in range(members)]
    ts = int(service.now())
    frames = []
    for _ in range(messages):
        envelope = json.loads(e2e.seal("u0", key, ("room", "#bench"), {"u0": der},
                                       b"x" * size, ts=ts))
        wrapped, keyId = envelope["encrypted_keys"]["u0"], envelope["key_ids"]["u0"]
        envelope["encrypted_keys"] = dict.fromkeys(names, wrapped)
        envelope["key_ids"] = dict.fromkeys(names, keyId)
        frames.append(opcodes.request(
            Op.ROOM_MSG, "#bench", json.dumps(envelope, separators=(",", ":")).encode()))
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--bytes", type=int, default=100, help="plaintext bytes")
    args = parser.parse_args(argv)
    service, doors, key = room(args.members)
    frames = envelopes(service, key, args.members, args.messages, args.bytes)
    sender, readers = doors[0], args.members - 1
    before = sum(door.transport.written for door in doors[1:])
    best = float("inf")
    step = max(1, len(frames) // 10)
    for first in range(0, len(frames), step):
        started = time.process_time()
        for frame in frames[first:first + step]:
            sender.dataReceived(frame)
        best = min(best, (time.process_time() - started) / len(frames[first:first + step]))
    written = sum(door.transport.written for door in doors[1:]) - before
    print(f"members={args.members} messages={args.messages} bytes={args.bytes}")
    print(f"{best / readers * 1e6:.2f} us of CPU per delivery (best slice), "
          f"{written / (args.messages * readers):.0f} bytes per delivery")
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
