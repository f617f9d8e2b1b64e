# -*- test-case-name: chatd.test.test_metrics -*-
"""
What an operator's monitoring reads: C{/metrics} in Prometheus's text format,
and C{/healthz}.

The core and the doors report through one L{Metrics} object, a handful of
hooks named for what happened (C{loggedIn}, C{refused}, ...), so that the
counting lives here and not across every module. Its metrics are registered
in a L{CollectorRegistry} of its own, not prometheus-client's global one, so
that two services in one process (the tests) count apart.

C{/healthz} answers 200 only when a real round trip to the store (and to
Redis, in a cluster) comes back within L{HEALTH_DEADLINE} seconds; otherwise
503 with the reason, so that a load balancer stops sending people to a node
that cannot serve them.
"""

import time
from http import HTTPStatus

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from chatd.errors import Status
from chatd.istore import IMessageStore

log = Logger()

# Seconds /healthz waits for the store and Redis before it answers 503.
HEALTH_DEADLINE = 2.0

# The name /healthz looks up in the store: any answer, found or not, is a round trip.
HEALTH_PROBE = "healthz"


class Metrics:
    """
    chatd's counters, and the hooks that move them.

    @ivar registry: the L{CollectorRegistry} holding them, for L{MetricsResource}.
    """

    def __init__(self, registry=None):
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.connections = Gauge(
            "chatd_connections", "Open connections, per door.", ["door"], registry=registry)
        self.logins = Counter(
            "chatd_logins", "Logins, by method (password, key) and outcome (ok, failed).",
            ["method", "outcome"], registry=registry)
        self.registrations = Counter(
            "chatd_registrations", "Accounts registered.", registry=registry)
        self.messages = Counter(
            "chatd_messages", "Messages accepted, by kind (room, direct).", ["kind"],
            registry=registry)
        self.deliveries = Counter(
            "chatd_deliveries", "Messages handed to a connection, by kind.", ["kind"],
            registry=registry)
        self.refusals = Counter(
            "chatd_refusals", "Requests refused, by status.", ["status"], registry=registry)
        self.rateLimited = Counter(
            "chatd_rate_limited", "Requests and connections refused for a limit, per door.",
            ["door"], registry=registry)
        self.transfers = Counter(
            "chatd_transfers", "File transfers offered.", registry=registry)
        self.transferBytes = Counter(
            "chatd_transfer_bytes", "File chunk bytes relayed.", registry=registry)
        self.storeLatency = Histogram(
            "chatd_store_seconds", "Time the store takes to answer, per operation.",
            ["operation"], registry=registry)
        self.redisConnected = Gauge(
            "chatd_redis_connected", "1 while the cluster's Redis is connected, else 0.",
            registry=registry)
        for status in Status:
            if status is not Status.OK:
                self.refusals.labels(status.name)
        for door in ("binary", "text", "web"):
            self.connections.labels(door)
        for method in ("password", "key"):
            for outcome in ("ok", "failed"):
                self.logins.labels(method, outcome)
        # Kept, not looked up: every message moves these two.
        self._messageKinds = {kind: self.messages.labels(kind) for kind in ("room", "direct")}
        self._deliveryKinds = {kind: self.deliveries.labels(kind) for kind in ("room", "direct")}

    # -- hooks ------------------------------------------------------------

    def connected(self, door: str) -> None:
        self.connections.labels(door).inc()

    def disconnected(self, door: str) -> None:
        self.connections.labels(door).dec()

    def loggedIn(self, method: str, ok: bool) -> None:
        self.logins.labels(method, "ok" if ok else "failed").inc()

    def registered(self) -> None:
        self.registrations.inc()

    def message(self, kind: str) -> None:
        self._messageKinds[kind].inc()

    def delivered(self, kind: str, sessions: int) -> None:
        self._deliveryKinds[kind].inc(sessions)

    def refused(self, door: str, status: Status) -> None:
        """
        A door answered a request (or a connection) with an error C{status}.
        """
        self.refusals.labels(Status(status).name).inc()
        if status == Status.RATE_LIMITED:
            self.rateLimited.labels(door).inc()

    def transferOffered(self) -> None:
        self.transfers.inc()

    def chunkRelayed(self, size: int) -> None:
        self.transferBytes.inc(size)

    def watchFanout(self, fanout) -> None:
        """
        Report the state of C{fanout}'s Redis, when it has one.
        """
        connected = getattr(fanout, "connected", None)
        if connected is not None:
            self.redisConnected.set_function(lambda: 1 if connected() else 0)


@implementer(IMessageStore)
class TimedStore:
    """
    An L{chatd.istore.IMessageStore} that times each call of the store it
    wraps into L{Metrics.storeLatency}, so that the store itself needs no
    counting.

    @param timer: a monotonic clock, in seconds.
    """

    def __init__(self, store, metrics, timer=time.monotonic):
        self._store = store
        self._histogram = metrics.storeLatency
        # Each operation's child of the histogram, kept: looking it up again
        # for every call was a visible part of a message's cost.
        self._operations: dict = {}
        self._timer = timer

    def __getattr__(self, name):
        method = getattr(self._store, name)
        if name.startswith("_") or not callable(method):
            return method
        histogram = self._operations.get(name)
        if histogram is None:
            histogram = self._operations[name] = self._histogram.labels(name)

        def timed(*args, **kwargs):
            start = self._timer()

            def observe(result):
                histogram.observe(self._timer() - start)
                return result
            return maybeDeferred(method, *args, **kwargs).addBoth(observe)
        return timed


class MetricsResource(Resource):
    """
    C{/metrics}: the registry in Prometheus's text format.

    prometheus-client's own C{twisted.MetricsResource} runs a WSGI app in the
    global reactor's thread pool; rendering the text is quick, so this one
    renders it in the reactor thread and needs neither.
    """

    isLeaf = True

    def __init__(self, registry):
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request):
        request.setHeader("content-type", CONTENT_TYPE_LATEST)
        return generate_latest(self.registry)


async def checkHealth(service, clock, deadline=HEALTH_DEADLINE):
    """
    A round trip to the store, and to Redis when the service has one.

    @return: L{None} when both answered within C{deadline} seconds.
    @raise Exception: with the reason when one did not.
    """
    checks = [("store", lambda: service.store.getAccount(HEALTH_PROBE))]
    ping = getattr(service.fanout, "ping", None)
    if ping is not None:
        checks.append(("redis", ping))
    for name, check in checks:
        d = maybeDeferred(check)
        d.addTimeout(deadline, clock)
        try:
            await d
        except Exception as e:
            if isinstance(e, (CancelledError, TimeoutError)):
                reason = "no answer within %gs" % (deadline,)
            else:
                reason = str(e) or type(e).__name__
            raise HealthError("%s: %s" % (name, reason)) from e


class HealthError(Exception):
    """
    The service cannot serve: the message says which part did not answer.
    """


class HealthResource(Resource):
    """
    C{/healthz}: 200 C{ok} when L{checkHealth} passes, else 503 and the reason.
    """

    isLeaf = True

    def __init__(self, service, clock):
        Resource.__init__(self)
        self.service = service
        self.clock = clock

    def render_GET(self, request):
        request.setHeader("content-type", "text/plain; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        d = Deferred.fromCoroutine(checkHealth(self.service, self.clock))

        def healthy(_):
            return b"ok\n"

        def unhealthy(failure):
            # Not logged: a load balancer asks every few seconds, and the
            # store and the fan-out log an outage themselves, once.
            failure.trap(HealthError)
            request.setResponseCode(HTTPStatus.SERVICE_UNAVAILABLE)
            return ("unavailable: %s\n" % (failure.getErrorMessage(),)).encode("utf-8")

        def finish(body):
            if not request.finished:
                request.write(body)
                request.finish()
        d.addCallbacks(healthy, unhealthy).addCallback(finish)
        d.addErrback(lambda f: log.failure("answering /healthz", f))
        return NOT_DONE_YET


def addOperatorPages(root: Resource, service, clock) -> Resource:
    """
    Put C{/metrics} and C{/healthz} on C{root}.

    @return: C{root}.
    """
    root.putChild(b"metrics", MetricsResource(service.metrics.registry))
    root.putChild(b"healthz", HealthResource(service, clock))
    return root
