# -*- test-case-name: chatd.test.test_client -*-
"""
The client end of the binary protocol: requests matched to their responses,
events handed on, heartbeats when the client has been silent, and the check of
the server's certificate when no certificate authority vouches for it.

The server answers every request but HEARTBEAT once, in request order, so a
queue of waiting L{Deferred}s is all the matching needs.
"""

import hashlib
from collections import deque
from typing import Any, Deque, Tuple

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.protocols import devicewire, opcodes, tuneSocket
from chatd.protocols.layouts import MalformedFrame
from chatd.protocols.opcodes import Op

log = Logger()

HEARTBEAT_TEXT = "stayin alive..."


class ServerError(Exception):
    """
    The server refused a request.

    @ivar status: the status byte.
    @ivar message: its message (for 0x09, a summary).
    @ivar members: for 0x09, the current C{(name, key)} pairs (version 3:
        C{devmembers} entries); else L{None}.
    @ivar head: for a 0x07 refusal of PUBLISH_DEVICES, the account's current
        head C{(version, hex hash)}; else L{None}.
    """

    def __init__(self, status, message, members=None, head=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.members = members
        self.head = head


class CertificateRefused(Exception):
    """
    The server's certificate is not the one pinned for it. Reconnecting cannot
    help, so the client stops; the message says what to do.
    """


# The protocol versions the client asks for in HELLO, newest first: 3
# (devices, docs/protocol.rst), then 2 (guest flags, moderation events); a
# server that refuses one with 0x01 is greeted with the next, and one that
# knows none of them with a plain HELLO (version 1).
PROTOCOL_VERSIONS = (devicewire.VERSION, 2)


@implementer(IHandshakeListener)
class ClientProtocol(Int32StringReceiver):
    """
    One connection to a chatd server.

    @ivar onEvent: called with C{(op, values)} for each event.
    @ivar checkPeer: called with the server's certificate once the TLS handshake
        is done; raises to refuse it, and may return a sentence to show the
        person (a first-use pin). L{None} when nothing needs checking (plain TCP,
        or TLS verified against a certificate authority).
    @ivar ready: fires with this protocol once requests may be sent: at once on
        plain TCP, after the certificate passed C{checkPeer} on TLS. Fails when
        the certificate is refused or the connection is lost first.
    @ivar lost: fires with L{None} once the connection is gone.
    @ivar lostReason: then, the L{Failure} saying why.
    @ivar peerNotice: what C{checkPeer} returned, if anything.
    @ivar version: the protocol version the server took in HELLO, by which
        its responses and events are read.
    """

    version = 1

    # A TCP or TLS transport (the TLS one is asked for the peer's certificate).
    transport: Any

    def __init__(self, clock, onEvent, checkPeer=None, heartbeat=6.0,
                 maxFrame=opcodes.MAX_FRAME_DEFAULT):
        self.clock = clock
        self.onEvent = onEvent
        self.checkPeer = checkPeer
        self.heartbeat = heartbeat
        self.MAX_LENGTH = maxFrame
        self.ready: Deferred = Deferred()
        self.lost: Deferred = Deferred()
        self.peerNotice = None
        self.lostReason = None
        self._pending: Deque[Tuple[int, Deferred]] = deque()
        self._timer = None

    def connectionMade(self):
        tuneSocket(self.transport)
        if self.checkPeer is None:
            self._start()

    def handshakeCompleted(self):
        if self.checkPeer is None or self.ready.called:
            return
        try:
            self.peerNotice = self.checkPeer(self.transport.getPeerCertificate())
        except Exception:
            failure = Failure()
            # Abort rather than close: nothing more should cross a connection to
            # a server we do not believe is ours.
            self.transport.abortConnection()
            self.ready.errback(failure)
            return
        self._start()

    def _start(self):
        self._beat()
        self.ready.callback(self)

    def _beat(self):
        """
        Send a HEARTBEAT after C{heartbeat} seconds without sending anything, as
        the server expects of a quiet client (docs/protocol.rst).
        """
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.heartbeat)
        else:
            self._timer = self.clock.callLater(self.heartbeat, self._heartbeat)

    def _heartbeat(self):
        self._timer = None
        self.transport.write(opcodes.request(Op.HEARTBEAT, HEARTBEAT_TEXT))
        self._beat()

    def request(self, op, *values):
        """
        Send one request.

        @return: a L{Deferred} that fires with the ok response's values, or
            fails with L{ServerError}, or with the reason the connection was lost.
        """
        if not self.connected:
            return fail(ConnectionLost("not connected to the server"))
        d: Deferred = Deferred()
        self._pending.append((op, d))
        if self.version >= devicewire.VERSION:
            self.transport.write(devicewire.request(op, *values))
        else:
            self.transport.write(opcodes.request(op, *values))
        self._beat()
        return d

    def stringReceived(self, body):
        try:
            op, payload = opcodes.parseBody(body)
            if op != Op.RESPONSE:
                self._dispatchEvent(op, payload)
                return
            request, d = self._pending.popleft()
            if self.version >= devicewire.VERSION:
                status, values = devicewire.decodeResponse(request, payload)
            else:
                status, values = opcodes.decodeResponse(request, payload, version=self.version)
        except (MalformedFrame, IndexError) as e:
            # A frame we cannot place means every later response could be
            # matched to the wrong request: drop the connection.
            self.transport.loseConnection()
            self._failPending(Failure(ConnectionLost("bad frame from the server: %s" % (e,))))
            return
        if status == 0:
            d.callback(values)
        elif status == opcodes.STALE_RECIPIENTS:
            d.errback(ServerError(status, "stale recipients", values[0]))
        elif status == devicewire.CONFLICT and request == devicewire.DeviceOp.PUBLISH_DEVICES:
            d.errback(ServerError(status, "the device list changed meanwhile (it is at "
                                          "version %d)" % (values[0],), head=values))
        else:
            d.errback(ServerError(status, values[0]))

    def _dispatchEvent(self, op, payload):
        """
        Hand an event on. An event a newer server may send that this client
        does not know is ignored; one that does not decode is a broken stream.
        """
        if op not in (devicewire.EVENTS if self.version >= devicewire.VERSION else opcodes.EVENTS):
            log.info("ignoring unknown event 0x{op:02x}", op=op)
            return
        if self.version >= devicewire.VERSION:
            values = devicewire.decodeEvent(op, payload)
        elif self.version > 1:
            values = opcodes.decodeEvent(op, payload, version=self.version)
        else:
            values = opcodes.decodeEvent(op, payload)
        try:
            self.onEvent(op, values)
        except Exception:
            log.failure("handling event 0x{op:02x}", op=op)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.connected = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._failPending(reason)
        if not self.ready.called:
            self.ready.errback(reason)
        self.lostReason = reason
        self.lost.callback(None)

    def _failPending(self, reason):
        pending, self._pending = self._pending, deque()
        for _, d in pending:
            d.errback(reason)



def certificateFingerprint(certDer):
    """
    The SHA-256 of a certificate's DER, as C{known_servers} records it.
    """
    return hashlib.sha256(certDer).hexdigest()


class ServerPin:
    """
    A C{checkPeer} for TLS without a certificate authority: the server's
    certificate is pinned on first use in C{known_servers}, like SSH's
    known_hosts, and a different one later is refused.

    @param knownServers: a L{chatd.client.keystore.KnownServers}.
    @param hostport: C{"host:port"} as the client connects to it.
    """

    def __init__(self, knownServers, hostport):
        self.knownServers = knownServers
        self.hostport = hostport

    def __call__(self, certificate):
        """
        Check the certificate the server presented.

        @param certificate: a C{pyOpenSSL} C{X509}, or L{None}.
        @return: a sentence to show the person on first use, else L{None}.
        @raise CertificateRefused: when it is not the pinned certificate.
        """
        if certificate is None:
            raise CertificateRefused("the server at %s presented no certificate" % (self.hostport,))
        der = certificate.to_cryptography().public_bytes(Encoding.DER)
        digest = certificateFingerprint(der)
        state = self.knownServers.check(self.hostport, der)
        if state == "new":
            self.knownServers.pin(self.hostport, der)
            return ("first connection to %s: its certificate (SHA-256 %s) is now pinned in %s"
                    % (self.hostport, digest, self.knownServers.path))
        if state == "changed":
            raise CertificateRefused(
                "THE CERTIFICATE OF %s HAS CHANGED. Refusing to connect.\n"
                "pinned:    SHA-256 %s\n"
                "presented: SHA-256 %s\n"
                "Someone may be intercepting the connection, or the server got a new "
                "certificate. Ask the server's operator which certificate it has now; "
                "only if the presented one is right, delete the line starting with %s "
                "from %s and connect again (or connect with --ca and the server's "
                "certificate)."
                % (self.hostport, self._pinned() or "(unreadable)", digest,
                   self.hostport.lower(), self.knownServers.path))
        return None

    def _pinned(self):
        """
        The digest pinned for this server, read from the file as the keystore
        documents it (C{<host:port> <sha256 hex>} per line), so that the
        refusal can show what was expected; the keystore itself only compares.
        """
        try:
            with open(self.knownServers.path, encoding="ascii", errors="replace") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) == 2 and fields[0].lower() == self.hostport.lower():
                        return fields[1]
        except OSError:
            pass
        return None


@implementer(IOpenSSLClientConnectionCreator)
class PinningTLSOptions:
    """
    TLS options for a server no certificate authority vouches for: OpenSSL
    takes any certificate, and L{ServerPin} decides once the handshake is done.
    The connection is encrypted either way; only the pin says whom to.

    @param hostname: the server's name, sent as SNI.
    """

    def __init__(self, hostname):
        self.hostname = hostname
        self._options = CertificateOptions()

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._options.getContext(), None)
        connection.set_app_data(tlsProtocol)
        if not (isIPAddress(self.hostname) or isIPv6Address(self.hostname)):
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        return connection
