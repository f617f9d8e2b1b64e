"""
A room's fan-out in one process, for L{bench.instructions}: the server (chatd's
core behind its binary door, or twisted.words' IRC server) with every reader's
connection a real TCP connection on loopback, and no reactor.

The reactor's own work (waiting in epoll, dispatching) is left out, and the
harness does what it would have done: it hands each batch of messages to the
sender's protocol as one read, runs what was scheduled for the turn's end
(chatd's L{chatd.protocols.outbox.TurnEnd}), and lets every connection write
what Twisted buffered for it, as C{doWrite} does when the socket is writable.
Both servers go through the same steps, so what differs between their counts
is their own code. Each reader's socket is read empty after every batch; that
costs both alike, a few hundred instructions per connection and batch.
"""

import json
import socket
from typing import Callable, List, Tuple

from twisted.cred import portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import tcp
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.words import service as words
from zope.interface import implementer

from bench.benchclient import newKey
from chatd import e2e
from chatd.config import Settings
from chatd.core.service import ChatService
from chatd.credentials import Credentials
from chatd.protocols import opcodes
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.opcodes import Op
from chatd.store.memory import MemoryStore
from chatd.store.seal import AtRestKeys, generateKey

ROOM = "#bench"


class _Connection(tcp.Connection):
    """
    A server-side TCP connection the harness drives in place of the reactor.
    """

    connected = 1

    def getPeer(self):
        return IPv4Address("TCP", "127.0.0.1", self.socket.getpeername()[1])

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", self.socket.getsockname()[1])

    def setTcpNoDelay(self, enabled):
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, enabled)

    # Nothing is registered with a reactor: the harness writes (see flush).
    def startReading(self):
        pass

    def stopReading(self):
        pass

    def startWriting(self):
        pass

    def stopWriting(self):
        pass


class Room:
    """
    N connections to one server in one room; the first one sends.

    @ivar clock: the reactor the server's protocols are given.
    @ivar protocols: the server-side protocol of each connection.
    """

    def __init__(self, factory, count: int, clock: Clock) -> None:
        self.clock = clock
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.protocols: List = []
        self._connections: List[_Connection] = []
        self._readers: List[socket.socket] = []
        for _ in range(count):
            reader = socket.create_connection(self._listener.getsockname())
            serverSide, _ = self._listener.accept()
            for end in (reader, serverSide):
                end.setblocking(False)
            # Room for a whole batch, so nothing waits in Twisted's buffers.
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            serverSide.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            protocol = factory.buildProtocol(None)
            connection = _Connection(serverSide, protocol, clock)
            protocol.makeConnection(connection)
            self.protocols.append(protocol)
            self._connections.append(connection)
            self._readers.append(reader)

    def turn(self, sender, data: bytes) -> int:
        """
        The server reads C{data} from C{sender} in one turn and writes what
        follows; then every reader reads.

        @return: the bytes the readers read.
        """
        sender.dataReceived(data)
        self.clock.advance(0)
        for connection in self._connections:
            if connection.dataBuffer or connection._tempDataBuffer:
                connection.doWrite()
        return self.drain()

    def drain(self) -> int:
        read = 0
        for reader in self._readers:
            while True:
                try:
                    data = reader.recv(1 << 22)
                except BlockingIOError:
                    break
                if not data:
                    break
                read += len(data)
        return read

    def close(self) -> None:
        for end in self._readers + [c.socket for c in self._connections] + [self._listener]:
            end.close()


def chatdRoom(readers: int, messages: int, size: int) -> Tuple[Room, Callable, List[bytes]]:
    """
    chatd's core on the memory store, C{readers} guests in one room through
    the binary door, and C{messages} ROOM_MSG frames from the first of them,
    each sealed to every member as a client would (one wrapped key per
    reader: the envelope's size is a real one's).

    @return: the room, the sender's protocol, the frames.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    unlimited = (10 ** 9, 1.0)
    settings = Settings(bcryptCost=4, rateLimit=unlimited, loginLimit=unlimited,
                        addressLimit=unlimited, joinLimit=unlimited,
                        joinAddressLimit=unlimited, addressConnections=10 ** 6,
                        idleWarning=10 ** 6, idleTimeout=10 ** 7)
    service = ChatService(MemoryStore(AtRestKeys([generateKey()]), clock), settings, clock,
                          credentials=Credentials(cost=4))
    service.startService()
    room = Room(BinaryFactory(service), readers, clock)
    key, der = newKey()
    names = ["reader%d" % (n,) for n in range(readers)]
    for protocol, name in zip(room.protocols, names):
        for frame in (opcodes.request(Op.HELLO), opcodes.request(Op.NICK, name),
                      opcodes.request(Op.SET_KEY, der), opcodes.request(Op.JOIN, ROOM, "")):
            protocol.dataReceived(frame)
        room.turn(protocol, b"")
    frames = []
    for _ in range(messages):
        envelope = json.loads(e2e.seal(names[0], key, ("room", ROOM), {names[0]: der},
                                       b"x" * size, ts=int(service.now())))
        wrapped, keyId = envelope["encrypted_keys"][names[0]], envelope["key_ids"][names[0]]
        envelope["encrypted_keys"] = dict.fromkeys(names, wrapped)
        envelope["key_ids"] = dict.fromkeys(names, keyId)
        frames.append(opcodes.request(
            Op.ROOM_MSG, ROOM, json.dumps(envelope, separators=(",", ":")).encode("ascii")))
    return room, room.protocols[0], frames


def wordsRoom(readers: int, messages: int, size: int) -> Tuple[Room, Callable, List[bytes]]:
    """
    twisted.words' IRC server (an in-memory realm, any nick with one
    password, the room made on the first JOIN), C{readers} IRC clients in
    one channel, and C{messages} PRIVMSG lines of C{size} bytes of text
    from the first.
    """
    clock = Clock()
    realm = words.InMemoryWordsRealm("bench.local")
    realm.createGroupOnRequest = True
    realm.createUserOnRequest = True
    names = ["reader%d" % (n,) for n in range(readers)]
    room = Room(words.IRCFactory(realm, portal.Portal(realm, [_AnyNick()])), readers, clock)
    for protocol, name in zip(room.protocols, names):
        room.turn(protocol, ("PASS bench\r\nNICK %s\r\nUSER %s 0 * :%s\r\nJOIN %s\r\n"
                             % (name, name, name, ROOM)).encode("ascii"))
    text = "x" * size
    lines = [("PRIVMSG %s :%d %s\r\n" % (ROOM, n, text)).encode("ascii")
             for n in range(messages)]
    return room, room.protocols[0], lines


@implementer(ICredentialsChecker)
class _AnyNick:
    """
    Lets any nick log in to the IRC server, with the password C{bench}:
    twisted.words has no anonymous login.
    """

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials):
        password = credentials.password
        if password in (b"bench", "bench"):
            return succeed(credentials.username)
        return fail(UnauthorizedLogin())
