# -*- test-case-name: chatd.test.test_website -*-
"""
Tests for L{chatd.protocols.website} and L{chatd.protocols.proxied}: what
keeps other sites out of the web door, and which address each door hands the
core behind a proxy.
"""

import ipaddress
import os
import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from chatd.config import normalOrigin, parseNetworks, parseOrigins
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.proxied import serverEndpoint
from chatd.protocols.text import TextFactory
from chatd.protocols.website import (
    CONTENT_SECURITY_POLICY,
    clientAddress,
    makeSite,
    makeWebResource,
)
from chatd.tap import WEB_DIRECTORY
from chatd.test.fakes import makeService


class UpgradeClient(Protocol):
    """
    Asks for a WebSocket at C{/ws} with the given headers, and records whether
    it was accepted, or the status and body of the refusal.

    @ivar server: the server's protocol, once connected by L{upgrade}.
    """

    transport: ITransport
    server: Any

    def __init__(self, host, headers):
        self.host = host
        self.headers = headers
        self.connection = WSConnection(ConnectionType.CLIENT)
        self.accepted = False
        self.status = None
        self.body = b""

    def connectionMade(self):
        self.transport.write(self.connection.send(
            Request(host=self.host, target="/ws", extra_headers=self.headers)))

    def dataReceived(self, data):
        self.connection.receive_data(data)
        for event in self.connection.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
            elif isinstance(event, RejectData):
                self.body += event.data


def upgrade(site, origin=None, host="localhost:8017", peer="10.0.0.1", forwardedFor=None):
    """
    Ask C{site} for a WebSocket in memory.

    @return: the L{UpgradeClient}, after the server answered.
    """
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if forwardedFor is not None:
        headers.append((b"x-forwarded-for", forwardedFor.encode()))
    address = IPv4Address("TCP", peer, 40000)
    server = site.buildProtocol(address)
    client = UpgradeClient(host, headers)
    pump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True, peerAddress=address),
        client, iosim.FakeTransport(client, isServer=False))
    pump.flush()
    client.server = server
    return client


class OriginTests(SynchronousTestCase):
    """
    The WebSocket door lets in the site's own pages, listed origins and
    clients that are not browsers, and refuses other pages with 403.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.service = makeService(clock=self.reactor,
                                   webOrigins=("https://chat.example.com",))
        self.site = makeSite(self.service, None, self.reactor)

    def test_ownOrigin(self):
        """
        A page whose origin has the host and port the request went to is let
        in, over HTTP or HTTPS (a proxy may end TLS).
        """
        self.assertTrue(upgrade(self.site, "http://localhost:8017").accepted)
        self.assertTrue(upgrade(self.site, "https://Chat.Example.net",
                                host="chat.example.net").accepted)
        self.assertTrue(upgrade(self.site, "https://chat.example.net",
                                host="chat.example.net:443").accepted)

    def test_listedOrigin(self):
        """
        A page from an origin listed in C{web-origins} is let in.
        """
        self.assertTrue(upgrade(self.site, "https://chat.example.com").accepted)

    def test_noOrigin(self):
        """
        A client that sends no C{Origin} (not a browser) is let in.
        """
        self.assertTrue(upgrade(self.site).accepted)

    def test_otherOriginRefused(self):
        """
        A page of another site, or of the same host on another port, is refused
        with 403 and a message that names the origin and the option; no session
        is made.
        """
        for origin in ["https://evil.example", "http://localhost:8018", "null",
                       "https://chat.example.com:8443"]:
            client = upgrade(self.site, origin)
            self.assertFalse(client.accepted, origin)
            self.assertEqual(client.status, 403, origin)
            self.assertIn(origin.encode(), client.body)
            self.assertIn(b"web-origins", client.body)
        self.assertEqual(self.service.directory.users, {})

    def test_refusalWithoutHost(self):
        """
        A request with an origin but no C{Host} header is refused, not
        crashed on.
        """
        request = DummyRequest([])
        request.requestHeaders.setRawHeaders(b"origin", [b"https://evil.example"])
        body = makeWebResource(self.service).children[b"ws"].render_GET(request)
        self.assertEqual(request.responseCode, 403)
        self.assertIn(b"may not use", body)


class OriginSettingTests(SynchronousTestCase):
    """
    C{web-origins} and C{trusted-proxies} values.
    """

    def test_normalOrigin(self):
        """
        Origins are written as browsers write them: lower case, without the
        scheme's default port or a trailing slash.
        """
        self.assertEqual(normalOrigin("HTTPS://Chat.Example.com:443/"),
                         "https://chat.example.com")
        self.assertEqual(normalOrigin("http://[::1]:8017"), "http://[::1]:8017")
        self.assertEqual(parseOrigins("https://a.example, http://b.example:81\nhttps://c"),
                         ("https://a.example", "http://b.example:81", "https://c"))

    def test_badOrigins(self):
        """
        Anything but an http or https origin is refused with a message.
        """
        for bad in ["chat.example.com", "ftp://chat.example.com", "https://a.example/path",
                    "https://a.example:99999", "https://user@a.example"]:
            error = self.assertRaises(ValueError, parseOrigins, bad)
            self.assertIn("https://chat.example.com", str(error))

    def test_networks(self):
        """
        Trusted proxies are addresses or networks; host bits are allowed.
        """
        self.assertEqual(parseNetworks("127.0.0.1, 10.1.2.3/8 ::1"),
                         ("127.0.0.1/32", "10.0.0.0/8", "::1/128"))
        error = self.assertRaises(ValueError, parseNetworks, "10.0.0.0/8, proxy.example")
        self.assertIn("'proxy.example'", str(error))


class HeaderTests(SynchronousTestCase):
    """
    Every response of the site carries the security headers.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.site = makeSite(makeService(clock=self.reactor), WEB_DIRECTORY, self.reactor)

    def assertSecurityHeaders(self, headers):
        """
        C{headers} (names in lower case) hold the policy, which forbids framing,
        nosniff, no referrer and DENY for framing.
        """
        self.assertEqual(headers["content-security-policy"], CONTENT_SECURITY_POLICY)
        self.assertIn("frame-ancestors 'none'", headers["content-security-policy"])
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(headers["referrer-policy"], "no-referrer")

    def test_onTheWire(self):
        """
        A response written to the network carries the headers.
        """
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        server = self.site.buildProtocol(address)
        transport = StringTransport()
        server.makeConnection(transport)
        server.dataReceived(b"GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = transport.value().split(b"\r\n\r\n", 1)[0].decode("latin-1")
        self.assertTrue(head.startswith("HTTP/1.1 404"), head)
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.assertSecurityHeaders(headers)

    def test_everyResource(self):
        """
        The page, its scripts and the WebSocket door's answers get the headers
        (set before any resource renders).
        """
        for path in [[b""], [b"app.js"], [b"ws"]]:
            request = DummyRequest(path)
            self.site.getResourceFor(request)
            self.assertSecurityHeaders({
                name.decode().lower(): values[-1].decode()
                for name, values in request.responseHeaders.getAllRawHeaders()})

    def test_policyMatchesPage(self):
        """
        The header's policy is the page's own meta policy plus
        C{frame-ancestors}, so the two never disagree.
        """
        with open(os.path.join(WEB_DIRECTORY, "index.html")) as f:
            page = f.read()
        meta = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]*)"', page)
        assert meta is not None, "index.html has no Content-Security-Policy"
        self.assertEqual(meta.group(1) + "; frame-ancestors 'none'", CONTENT_SECURITY_POLICY)


class ForwardedRequest:
    """
    Just what L{clientAddress} reads of a request.
    """

    def __init__(self, peer, forwardedFor=()):
        from twisted.web.http_headers import Headers
        self.peer = IPv4Address("TCP", peer, 40000)
        self.requestHeaders = Headers()
        if forwardedFor:
            self.requestHeaders.setRawHeaders(b"x-forwarded-for",
                                              [value.encode() for value in forwardedFor])

    def getClientAddress(self):
        return self.peer


class ClientAddressTests(SynchronousTestCase):
    """
    L{clientAddress} believes C{X-Forwarded-For} only from trusted proxies,
    and takes its right-most address that is not one.
    """

    proxies = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1"))

    def address(self, peer, *forwardedFor):
        return clientAddress(ForwardedRequest(peer, forwardedFor), self.proxies)

    def test_untrustedPeer(self):
        """
        From a peer that is not a trusted proxy, the header is ignored.
        """
        self.assertEqual(self.address("198.51.100.9", "203.0.113.5"), "198.51.100.9")

    def test_noProxiesConfigured(self):
        """
        Without trusted proxies, the header is always ignored.
        """
        request = ForwardedRequest("127.0.0.1", ["203.0.113.5"])
        self.assertEqual(clientAddress(request), "127.0.0.1")

    def test_rightMostUntrusted(self):
        """
        Through trusted proxies, the client is the right-most address that is
        not a trusted proxy; what a client wrote to the left of it is ignored.
        """
        self.assertEqual(self.address("127.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.2"),
                         "203.0.113.5")
        self.assertEqual(self.address("127.0.0.1", "1.1.1.1", "203.0.113.5, 10.0.0.2"),
                         "203.0.113.5")

    def test_allTrusted(self):
        """
        When every hop is a trusted proxy, the left-most is the client.
        """
        self.assertEqual(self.address("127.0.0.1", "10.9.9.9, 10.0.0.2"), "10.9.9.9")

    def test_missingHeader(self):
        """
        From a trusted proxy that adds no header, the proxy is the client.
        """
        self.assertEqual(self.address("10.0.0.2"), "10.0.0.2")

    def test_garbageStops(self):
        """
        An entry that is not an address ends the walk at the last trusted hop,
        and IPv4-mapped IPv6 addresses are read as IPv4.
        """
        self.assertEqual(self.address("127.0.0.1", "203.0.113.5, unknown"), "127.0.0.1")
        self.assertEqual(self.address("127.0.0.1", "::ffff:203.0.113.5"), "203.0.113.5")

    def test_webSocketSessionAddress(self):
        """
        The WebSocket door hands the core the forwarded address when the request
        comes from a trusted proxy, and the peer's otherwise.
        """
        reactor = MemoryReactorClock()
        service = makeService(clock=reactor, trustedProxies=("127.0.0.1/32",))
        addresses = []
        connect = service.connect
        def recordingConnect(client, address):
            addresses.append(address)
            return connect(client, address)
        self.patch(service, "connect", recordingConnect)
        site = makeSite(service, None, reactor)
        self.assertTrue(upgrade(site, peer="127.0.0.1", forwardedFor="203.0.113.5").accepted)
        self.assertTrue(upgrade(site, peer="198.51.100.9", forwardedFor="203.0.113.5").accepted)
        self.assertEqual(addresses, ["203.0.113.5", "198.51.100.9"])


class ProxyProtocolTests(SynchronousTestCase):
    """
    Behind C{haproxy:}, the binary and text doors start once the PROXY header
    is read, and hand the core the address it names.
    """

    HEADER = b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 4017\r\n"

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.service = makeService(clock=self.reactor)

    def connect(self, factory):
        """
        Connect through a C{haproxy:tcp:} listener from the proxy's address.

        @return: the connection's outermost protocol and its transport.
        """
        serverEndpoint(self.reactor, "haproxy:tcp:4017").listen(factory)
        wrapping = self.reactor.tcpServers[-1][1]
        peer = IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = wrapping.buildProtocol(peer)
        assert protocol is not None
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_binaryDoorAddress(self):
        """
        The binary door starts only once the header is read, and its session
        has the address the header names, not the proxy's.
        """
        protocol, transport = self.connect(BinaryFactory(self.service))
        door = protocol.wrappedProtocol
        self.assertIsNone(door.session)
        protocol.dataReceived(self.HEADER)
        self.assertEqual(door.session.address, "203.0.113.7")

    def test_textDoorGreetsAfterHeader(self):
        """
        The text door greets once the header has come, even when nothing else
        came with it, and then has the header's address.
        """
        protocol, transport = self.connect(TextFactory(self.service))
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(self.HEADER)
        self.assertTrue(transport.value().startswith(b"OK::"))
        self.assertEqual(protocol.wrappedProtocol.session.address, "203.0.113.7")

    def test_dataAfterHeader(self):
        """
        Bytes that came in the same read as the header reach the door.
        """
        protocol, transport = self.connect(TextFactory(self.service))
        protocol.dataReceived(self.HEADER + b"CMD::/ping\n")
        self.assertIn(b'"type":"pong"', transport.value())

    def test_noHeader(self):
        """
        A connection that does not start with a PROXY header is closed without
        the door ever starting.
        """
        protocol, transport = self.connect(TextFactory(self.service))
        protocol.dataReceived(b"CMD::/ping\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        protocol.connectionLost(None)
        self.assertIsNone(protocol.wrappedProtocol.session)

    def test_plainEndpoint(self):
        """
        Descriptions without C{haproxy:} are Twisted's, unchanged.
        """
        serverEndpoint(self.reactor, "tcp:4019").listen(BinaryFactory(self.service))
        self.assertIsInstance(self.reactor.tcpServers[-1][1], BinaryFactory)
