# -*- test-case-name: chatd.test.test_website -*-
"""
The web door's site: the browser client's files at C{/}, the WebSocket door at
C{/ws}, and what keeps other sites out of both.

- Every response carries headers a page cannot set for itself: the Content
  Security Policy with C{frame-ancestors 'none'} (and C{X-Frame-Options: DENY}
  for older browsers), C{X-Content-Type-Options: nosniff} and
  C{Referrer-Policy: no-referrer}.
- A WebSocket upgrade that carries an C{Origin} (every browser sends one) is
  refused with 403 unless the origin is the site's own (its host and port are
  those the request was sent to, in its C{Host} header) or listed in
  C{web-origins}. So a page of another site that a person opens cannot talk to
  the door from their browser. Clients that are not browsers send no
  C{Origin} and are let in.
- The client's address, which the per-address limits count, is the peer's,
  unless the peer is one of the C{trusted-proxies}: then it is the right-most
  address of C{X-Forwarded-For} that is not a trusted proxy itself.
"""

import ipaddress
import urllib.parse
from http import HTTPStatus

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File
from twisted.web.websocket import WebSocketResource

from chatd.config import DEFAULT_PORTS, normalOrigin
from chatd.metrics import addOperatorPages
from chatd.protocols.websocket import WebSocketChatFactory

log = Logger()

# The browser client's policy (also in its index.html), plus what only a
# header can say: no other page may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = (
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"X-Frame-Options", b"DENY"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
)

def _isOwnOrigin(origin: str, host: str) -> bool:
    """
    Whether C{origin} names the host and port of a request's C{Host} header.

    The scheme is not compared: behind a proxy that ends TLS, the page is
    C{https} while the request that reaches chatd is plain HTTP.
    """
    parts = urllib.parse.urlsplit(origin)
    target = urllib.parse.urlsplit("//" + host)
    try:
        default = DEFAULT_PORTS[parts.scheme]
        return (parts.hostname is not None and parts.hostname == target.hostname
                and (parts.port or default) == (target.port or default))
    except (KeyError, ValueError):
        return False


class GuardedWebSocketResource(WebSocketResource):
    """
    The WebSocket door, refusing upgrades from other sites' pages.

    @ivar allowed: the normalised origins let in besides the site's own.
    """

    def __init__(self, factory, allowed=()):
        WebSocketResource.__init__(self, factory)
        self.allowed = frozenset(allowed)

    def render_GET(self, request):
        origin = request.getHeader("origin")
        if origin is None or self._accepts(origin, request):
            return WebSocketResource.render_GET(self, request)
        log.info("refused a WebSocket from origin {origin}", origin=origin)
        request.setResponseCode(HTTPStatus.FORBIDDEN)
        request.setHeader("content-type", "text/plain; charset=utf-8")
        return ("origin %s may not use this WebSocket door: it accepts the pages of "
                "its own site and the origins listed in web-origins\n"
                % (origin,)).encode("utf-8", "backslashreplace")

    def _accepts(self, origin, request):
        host = request.getHeader("host")
        if host is not None and _isOwnOrigin(origin, host):
            return True
        try:
            return normalOrigin(origin) in self.allowed
        except ValueError:
            return False


def _address(text):
    """
    An IP address, IPv4-mapped IPv6 ones as IPv4, or L{None} for anything else.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def clientAddress(request, trustedProxies=()) -> str:
    """
    The address of the client behind C{request}, as the per-address limits
    count it.

    @param trustedProxies: L{ipaddress} networks whose C{X-Forwarded-For} is
        believed.
    @return: the peer's host; or, when the peer is in C{trustedProxies}, the
        right-most address of C{X-Forwarded-For} outside them (the left-most
        one if all are inside). Reading stops at an entry that is not an IP
        address, and the last trusted address before it is used.
    """
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if host is None:
        return str(peer)
    address = _address(host)
    if address is None or not trustedProxies:
        return host

    def trusted(ip):
        return any(ip in network for network in trustedProxies)

    hops = [hop for value in request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
            for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if not trusted(address):
            break
        hopAddress = _address(hop)
        if hopAddress is None:
            break
        address = hopAddress
    return str(address)


class ChatSite(Site):
    """
    A L{Site} that adds L{SECURITY_HEADERS} to every response.

    It keeps no access log unless given a C{logPath}: L{Site} otherwise
    writes every request, each file of the browser client included, to the
    server's log, where the lines an operator needs drown.
    """

    def log(self, request):
        if self.logPath is not None:
            Site.log(self, request)

    def getResourceFor(self, request):
        for name, value in SECURITY_HEADERS:
            request.responseHeaders.setRawHeaders(name, [value])
        return Site.getResourceFor(self, request)


def makeWebResource(service, staticDirectory=None, operatorPages=None):
    """
    The root of chatd's web site: the WebSocket door at C{/ws} and, when a
    directory is given, the files of the browser client from it at C{/}.

    @param service: the L{chatd.core.service.ChatService}, whose settings give
        C{webOrigins} and C{trustedProxies}.
    @param staticDirectory: a path, or L{None} to serve only C{/ws}.
    @param operatorPages: the reactor, to serve C{/metrics} and C{/healthz}
        too (see L{chatd.metrics}); L{None} not to.
    @rtype: L{twisted.web.resource.IResource}
    """
    settings = service.settings
    proxies = tuple(ipaddress.ip_network(text) for text in settings.trustedProxies)
    factory = WebSocketChatFactory(service, lambda request: clientAddress(request, proxies))
    root = File(staticDirectory) if staticDirectory is not None else Resource()
    root.putChild(b"ws", GuardedWebSocketResource(factory, settings.webOrigins))
    if operatorPages is not None:
        addOperatorPages(root, service, operatorPages)
    return root


def makeSite(service, staticDirectory, reactor, operatorPages=True) -> Site:
    """
    The web door's site: L{makeWebResource} served with L{SECURITY_HEADERS},
    with C{/metrics} and C{/healthz} unless C{operatorPages} is false, and an
    access log only when the settings name a file for it.
    """
    root = makeWebResource(service, staticDirectory, reactor if operatorPages else None)
    return ChatSite(root, logPath=service.settings.accessLog or None, reactor=reactor)


def makeOperatorSite(service, reactor) -> Site:
    """
    The site of the C{metrics} listener: only C{/metrics} and C{/healthz}.
    """
    root = addOperatorPages(Resource(), service, reactor)
    return ChatSite(root, logPath=service.settings.accessLog or None, reactor=reactor)
