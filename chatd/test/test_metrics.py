"""
Tests for L{chatd.metrics}: C{/metrics} as Prometheus parses it, and C{/healthz}.
"""

import base64
import tempfile

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from chatd import e2e
from chatd.istore import IMessageStore
from chatd.metrics import HEALTH_DEADLINE, Metrics, TimedStore
from chatd.options import Options
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeWebResource
from chatd.store.memory import MemoryStore
from chatd.tap import makeService as makeTapService
from chatd.test.fakes import makeService, privateKey, publicDer, testKeys
from chatd.test.test_text import LineClient


def fetch(root, path, clock=None):
    """
    GET C{path} from the resource tree C{root}.

    @return: C{(code, body)}, or L{None} while the answer is not finished.
    """
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    result = getChildForRequest(root, request).render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    if not request.finished:
        return None
    return request.responseCode or 200, b"".join(request.written)


def samples(root):
    """
    C{/metrics} of C{root}, parsed by prometheus-client: C{{(name, labels): value}}.
    """
    code, body = fetch(root, b"/metrics")
    assert code == 200, code
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples}


def b64(data):
    return base64.b64encode(data).decode()


class MetricsTests(SynchronousTestCase):
    """
    The counters move as people connect, log in and write, and C{/metrics}
    serves them in Prometheus's text format.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.metrics = Metrics()
        self.store = TimedStore(MemoryStore(testKeys()), self.metrics)
        self.service = makeService(store=self.store, clock=self.clock, metrics=self.metrics)
        self.root = makeWebResource(self.service, operatorPages=self.clock)
        self.factory = TextFactory(self.service)

    def test_timedStoreIsAStore(self):
        """
        A timed store provides L{IMessageStore}, so that the service takes
        it where it takes any store.
        """
        self.assertTrue(verifyObject(IMessageStore, self.store))

    def test_countersMove(self):
        """
        A registration, a failed and a good login, and a room message each move
        their counter; the gauge counts open text connections, the store's
        latency histogram counts the stored message, and a wrong password is a
        refusal with status FORBIDDEN.
        """
        before = samples(self.root)
        alice = LineClient(self.factory)
        bob = LineClient(self.factory)
        alice.ok("CMD::/register alice secret123 " + b64(publicDer("alice")))
        bob.ok("CMD::/register bob secret123 " + b64(publicDer("bob")))
        other = LineClient(self.factory)
        self.assertEqual(other.status("CMD::/login alice wrongpass"), 5)
        other.ok("CMD::/login alice secret123")
        alice.ok("CMD::/join #x")
        bob.ok("CMD::/join #x")
        members = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        alice.ok(b"MSG::" + e2e.seal("alice", privateKey("alice"), ("room", "#x"), members,
                                      b"hello", ts=int(self.clock.seconds() * 1000)))
        after = samples(self.root)

        def moved(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            return after[key] - before.get(key, 0)

        self.assertEqual(moved("chatd_connections", door="text"), 3)
        self.assertEqual(moved("chatd_registrations_total"), 2)
        self.assertEqual(moved("chatd_logins_total", method="password", outcome="ok"), 1)
        self.assertEqual(moved("chatd_logins_total", method="password", outcome="failed"), 1)
        self.assertEqual(moved("chatd_refusals_total", status="FORBIDDEN"), 1)
        self.assertEqual(moved("chatd_messages_total", kind="room"), 1)
        # Bob's session, and alice's second one (other).
        self.assertEqual(moved("chatd_deliveries_total", kind="room"), 2)
        self.assertEqual(moved("chatd_store_seconds_count", operation="appendMessage"), 1)

        other.protocol.connectionLost(None)
        self.assertEqual(samples(self.root)[("chatd_connections", (("door", "text"),))], 2)

    def test_rateLimited(self):
        """
        A request refused for a limit counts as a refusal with status
        RATE_LIMITED and as a rate-limited request of its door.
        """
        service = makeService(clock=self.clock, registerLimit=(1, 60.0))
        root = makeWebResource(service, operatorPages=self.clock)
        client = LineClient(TextFactory(service))
        client.ok("CMD::/register alice secret123 " + b64(publicDer("alice")))
        other = LineClient(TextFactory(service))
        self.assertEqual(other.status("CMD::/register bob secret123 " + b64(publicDer("bob"))),
                         2)
        values = samples(root)
        self.assertEqual(values[("chatd_refusals_total", (("status", "RATE_LIMITED"),))], 1)
        self.assertEqual(values[("chatd_rate_limited_total", (("door", "text"),))], 1)

    def test_redisConnected(self):
        """
        C{chatd_redis_connected} follows a fan-out that can say whether it is
        connected.
        """
        class Fanout:
            up = False

            def connected(self):
                return self.up
        metrics, fanout = Metrics(), Fanout()
        metrics.watchFanout(fanout)
        self.assertEqual(metrics.registry.get_sample_value("chatd_redis_connected"), 0)
        fanout.up = True
        self.assertEqual(metrics.registry.get_sample_value("chatd_redis_connected"), 1)

    def test_privateRegistry(self):
        """
        Two services count apart: the metrics are not in the global registry.
        """
        other = makeService(clock=self.clock)
        LineClient(self.factory)
        self.assertEqual(
            other.metrics.registry.get_sample_value("chatd_connections", {"door": "text"}), 0)
        self.assertEqual(
            self.metrics.registry.get_sample_value("chatd_connections", {"door": "text"}), 1)


class FailingStore(MemoryStore):
    """
    A store whose lookups fail, as one whose database went away.
    """

    def getAccount(self, name):
        return fail(OSError("database is gone"))


class SilentStore(MemoryStore):
    """
    A store whose lookups never answer, as one whose database hangs.
    """

    def getAccount(self, name):
        return Deferred()


class PingFanout:
    """
    A fan-out whose Redis answers C{PING} with C{result}, a L{Deferred}.
    """

    nodeId = "fake"

    def __init__(self, result):
        self.result = result

    def ping(self):
        return self.result

    def __getattr__(self, name):
        raise AttributeError(name)


class HealthTests(SynchronousTestCase):
    """
    C{/healthz} answers 200 only when the store and Redis answer.
    """

    def root(self, store=None, clock=None):
        clock = clock or Clock()
        service = makeService(store=store or MemoryStore(testKeys()), clock=clock)
        return makeWebResource(service, operatorPages=clock), service

    def test_healthy(self):
        """
        A store that answers: 200 C{ok}.
        """
        root, _ = self.root()
        self.assertEqual(fetch(root, b"/healthz"), (200, b"ok\n"))

    def test_storeFails(self):
        """
        A store that fails: 503, saying the store failed and why, and nothing
        logged (a load balancer asks every few seconds).
        """
        root, _ = self.root(FailingStore(testKeys()))
        with capturedLogs() as events:
            self.assertEqual(fetch(root, b"/healthz"),
                             (503, b"unavailable: store: database is gone\n"))
        self.assertEqual(events, [])

    def test_storeHangs(self):
        """
        A store that does not answer: no answer until the deadline, then 503.
        """
        clock = Clock()
        root, _ = self.root(SilentStore(testKeys()), clock)
        request = DummyRequest([b"healthz"])
        self.assertIs(getChildForRequest(root, request).render(request), NOT_DONE_YET)
        clock.advance(HEALTH_DEADLINE - 0.1)
        self.assertFalse(request.finished)
        clock.advance(0.1)
        self.assertEqual((request.responseCode, b"".join(request.written)),
                         (503, b"unavailable: store: no answer within 2s\n"))

    def test_redisFails(self):
        """
        In a cluster, a Redis that does not answer C{PING} is a 503 too.
        """
        root, service = self.root()
        service.fanout = PingFanout(fail(ConnectionError("not connected to redis")))
        self.assertEqual(fetch(root, b"/healthz"),
                         (503, b"unavailable: redis: not connected to redis\n"))
        service.fanout = PingFanout(Deferred())
        service.fanout.result.callback("PONG")
        self.assertEqual(fetch(root, b"/healthz"), (200, b"ok\n"))


class ListenerTests(SynchronousTestCase):
    """
    C{--metrics} moves C{/metrics} and C{/healthz} off the web door.
    """

    def build(self, *args):
        options = Options()
        options.parseOptions(["--data-dir", tempfile.mkdtemp(), "--db", "memory:",
                              "--binary", "none", "--text", "none",
                              "--web", "tcp:8017", *args])
        reactor = MemoryReactorClock()
        top = makeTapService(options, reactor=reactor)
        top.startService()
        self.addCleanup(top.stopService)
        return {port: factory for port, factory, *_ in reactor.tcpServers}

    def test_onWebDoor(self):
        """
        By default the web door serves C{/metrics} and C{/healthz}.
        """
        sites = self.build()
        self.assertEqual(list(sites), [8017])
        self.assertIn(b"metrics", sites[8017].resource.children)
        self.assertIn(b"healthz", sites[8017].resource.children)

    def test_separateListener(self):
        """
        With C{--metrics}, they are served there, and not on the web door.
        """
        sites = self.build("--metrics", "tcp:9017:interface=127.0.0.1")
        self.assertEqual(sorted(sites), [8017, 9017])
        self.assertNotIn(b"metrics", sites[8017].resource.children)
        self.assertEqual(sorted(sites[9017].resource.children), [b"healthz", b"metrics"])

    def test_badEndpoint(self):
        """
        A C{--metrics} that is no endpoint is refused before anything starts.
        """
        from chatd.config import ConfigError
        options = Options()
        self.assertRaises((ConfigError, UsageError), options.parseOptions,
                          ["--data-dir", tempfile.mkdtemp(), "--metrics", "nonsense:1"])
