# -*- test-case-name: chatd.test.test_tap -*-
"""
Tests for L{chatd.tap}, L{chatd.options} and the settings they build with L{chatd.config}.
"""

import os
import re
import sys
from dataclasses import replace
from typing import List

from cryptography import x509
from OpenSSL import SSL
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.server import Site

import chatd
from chatd import config
from chatd.collector import CollectorThresholds
from chatd.config import Settings, readConfigFile
from chatd.core.service import ChatService
from chatd.datadir import prepare
from chatd.options import Options
from chatd.protocols.binary import BinaryFactory
from chatd.protocols.text import TextFactory
from chatd.store.seal import AtRestKeys, generateKey
from chatd.tap import ListenWhenReady, makeService
from chatd.test.test_tls import groupName, handshake
from chatd.tls import knownGroups
from chatd.tlshandoff import HandingOffTLSFactory

DEFAULT_SSL = (
    "ssl:4017:privateKey=chatd-data/tls/server.key:certKey=chatd-data/tls/server.crt"
)
DEFAULT_TEXT = DEFAULT_SSL.replace("4017", "4018")
DEFAULT_WEB = "tcp:8017:interface=127.0.0.1"

# The settings that OptionsTests.test_everyOption gives on the command line
# and ConfigFileTests.test_everyKey in a config file (which adds redis and
# key-file), each one away from its default: written once, so that the two
# tests expect the same and stay in step when a setting is added.
EVERY_OPTION = Settings(
    dataDir="/srv/chat",
    binary=("tcp:4017", "tcp:4019:interface=127.0.0.1"),
    text=(),
    web=("tcp:8080",),
    db="memory:",
    allowGuests=False,
    idleWarning=40.0,
    idleTimeout=60.5,
    rateLimit=(10, 2.5),
    loginLimit=(3, 30.0),
    addressLimit=(10, 30.0),
    loginDelay=4.5,
    registerLimit=(100, 60.0),
    maxFrame=65536,
    historyLimit=100,
    sendQueue=131072,
    bcryptCost=10,
    window=1,
    offerTimeout=30.0,
    chunkTimeout=15.0,
    maxFileSize=1000000,
    maxTransfers=2,
)


def tlsContexts(reactor):
    """
    The context factories of the TLS listeners C{reactor} was given.
    """
    return [factory.contextFactory for _, factory, _, _ in reactor.tcpServers
            if isinstance(factory, HandingOffTLSFactory)]


def parse(*args):
    """
    Parse C{args} as C{twistd chatd} would.

    @return: the resulting L{Settings}
    """
    options = Options()
    options.parseOptions(list(args))
    return options["settings"]


class OptionsTests(SynchronousTestCase):
    """
    L{Options} turns a command line into L{Settings}.
    """

    def test_defaults(self):
        """
        With no options, chatd serves the binary and text doors with TLS on 4017
        and 4018 with the data directory's certificate, the web door on
        loopback port 8017, and keeps its SQLite database in the data directory.
        """
        self.assertEqual(
            parse(),
            Settings(
                dataDir="chatd-data",
                binary=(DEFAULT_SSL,),
                text=(DEFAULT_TEXT,),
                web=(DEFAULT_WEB,),
                db="sqlite:chatd-data/chatd.sqlite",
            ),
        )

    def test_everyOption(self):
        """
        Every option lands in its field of the settings.
        """
        self.assertEqual(
            parse(
                "--data-dir", "/srv/chat",
                "--binary", "tcp:4017",
                "--binary", "tcp:4019:interface=127.0.0.1",
                "--text", "none",
                "--web", "tcp:8080",
                "--db", "memory:",
                "--no-guests",
                "--idle-warning", "40",
                "--idle-timeout", "60.5",
                "--rate-limit", "10/2.5",
                "--login-limit", "3/30",
                "--address-limit", "10/30",
                "--login-delay", "4.5",
                "--register-limit", "100/60",
                "--max-frame", "65536",
                "--history-limit", "100",
                "--send-queue", "131072",
                "--bcrypt-cost", "10",
                "--window", "1",
                "--offer-timeout", "30",
                "--chunk-timeout", "15",
                "--max-file-size", "1000000",
                "--max-transfers", "2",
            ),
            EVERY_OPTION,
        )

    def test_dataDirMovesDefaults(self):
        """
        The default database and certificate follow C{--data-dir}.
        """
        settings = parse("--data-dir", "/srv/chat")
        self.assertEqual(settings.db, "sqlite:/srv/chat/chatd.sqlite")
        self.assertEqual(
            settings.binary,
            (
                "ssl:4017:privateKey=/srv/chat/tls/server.key"
                ":certKey=/srv/chat/tls/server.crt",
            ),
        )

    def test_defaultEndpointEscapesPath(self):
        """
        A data directory whose name holds C{:} or C{\\} still gives a default
        endpoint that names its certificate.
        """
        dataDir = os.path.join(self.mktemp(), "a:b\\c")
        settings = parse("--data-dir", dataDir)
        prepare(dataDir)
        reactor = MemoryReactorClock()
        serverFromString(reactor, settings.binary[0]).listen(None)
        self.assertEqual(reactor.sslServers[0][0], 4017)

    def test_sslWithoutKeyUsesDataDir(self):
        """
        An C{ssl:} listener of any door that names no key or certificate gets
        the data directory's, as the default listeners have; one that names
        them keeps its own, and other endpoints are left alone.
        """
        settings = parse("--binary", "ssl:5017:interface=127.0.0.1", "--text", "ssl:5018",
                         "--web", "ssl:5019", "--web", "tcp:5020")
        self.assertEqual(settings.binary, (
            "ssl:5017:interface=127.0.0.1:privateKey=chatd-data/tls/server.key"
            ":certKey=chatd-data/tls/server.crt",))
        self.assertEqual(settings.text, (DEFAULT_SSL.replace("4017", "5018"),))
        self.assertEqual(settings.web, (DEFAULT_SSL.replace("4017", "5019"), "tcp:5020"))
        own = "ssl:5017:privateKey=chatd-data/tls/server.key"
        self.assertEqual(parse("--binary", own).binary, (own,))

    def test_errorUnderTwistd(self):
        """
        Under twistd, a mistake on the command line ends it with one line that
        names the mistake, instead of twistd's whole usage text.
        """
        from twisted.scripts.twistd import ServerOptions
        error = self.assertRaises(SystemExit, ServerOptions().parseOptions,
                                  ["chatd", "--window", "0"])
        self.assertEqual(str(error), "chatd: Parameter type enforcement failed: '0' is not "
                         "between 1 and 65535 (twistd chatd --help lists the options)")

    def test_allowGuests(self):
        """
        C{--allow-guests} and C{--no-guests} set whether guests are let in; the
        last one given wins.
        """
        self.assertFalse(parse("--no-guests").allowGuests)
        self.assertTrue(parse("--no-guests", "--allow-guests").allowGuests)

    def test_helpListsEveryKey(self):
        """
        The help text names every setting as an option.
        """
        help = str(Options())
        for key in config.FIELDS:
            self.assertIn("--" + key, help)
        self.assertIn("--no-guests", help)
        self.assertIn("--config", help)


class ConfigFileTests(SynchronousTestCase):
    """
    C{--config} reads the same settings from an INI file, beneath the command
    line and above the defaults.
    """

    def writeConfig(self, text):
        """
        Write C{text} to a new file.

        @return: its path
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_everyKey(self):
        """
        Every key of the file lands in its field of the settings.
        """
        path = self.writeConfig(
            "[chatd]\n"
            "data-dir = /srv/chat\n"
            "binary = tcp:4017, tcp:4019:interface=127.0.0.1\n"
            "text = none\n"
            "web = tcp:8080\n"
            "db = memory:\n"
            "allow-guests = no\n"
            "idle-warning = 40\n"
            "idle-timeout = 60.5  # seconds\n"
            "rate-limit = 10/2.5\n"
            "login-limit = 3/30\n"
            "address-limit = 10/30\n"
            "login-delay = 4.5\n"
            "register-limit = 100/60\n"
            "max-frame = 65536\n"
            "history-limit = 100\n"
            "send-queue = 131072\n"
            "bcrypt-cost = 10\n"
            "window = 1\n"
            "offer-timeout = 30\n"
            "chunk-timeout = 15\n"
            "max-file-size = 1000000\n"
            "max-transfers = 2\n"
            "redis = redis://127.0.0.1:6380/2\n"
            "key-file = /etc/chatd/at-rest.key\n"
        )
        self.assertEqual(
            parse("--config", path),
            replace(EVERY_OPTION, redis="redis://127.0.0.1:6380/2",
                    keyFile="/etc/chatd/at-rest.key"),
        )

    def test_endpointsOnLines(self):
        """
        Endpoints may also be given one per line.
        """
        path = self.writeConfig(
            "[chatd]\nbinary =\n    tcp:4017\n    tcp:4019:interface=127.0.0.1\n"
        )
        self.assertEqual(
            parse("--config", path).binary,
            ("tcp:4017", "tcp:4019:interface=127.0.0.1"),
        )

    def test_fileAboveDefaults(self):
        """
        Keys the file leaves out take their defaults, and derived defaults
        follow the file's data directory.
        """
        path = self.writeConfig("[chatd]\ndata-dir = /srv/chat\nidle-timeout = 45\n")
        settings = parse("--config", path)
        self.assertEqual(settings.idleTimeout, 45.0)
        self.assertEqual(settings.idleWarning, Settings().idleWarning)
        self.assertEqual(settings.db, "sqlite:/srv/chat/chatd.sqlite")

    def test_commandLineAboveFile(self):
        """
        What the command line gives overrides the file, and a command-line
        C{--binary} replaces the file's list rather than adding to it.
        """
        path = self.writeConfig(
            "[chatd]\n"
            "binary = tcp:4017, tcp:4018\n"
            "idle-timeout = 45\n"
            "allow-guests = no\n"
            "history-limit = 20\n"
        )
        settings = parse(
            "--config", path,
            "--binary", "tcp:5000",
            "--idle-timeout", "50",
            "--allow-guests",
        )
        self.assertEqual(settings.binary, ("tcp:5000",))
        self.assertEqual(settings.idleTimeout, 50.0)
        self.assertTrue(settings.allowGuests)
        self.assertEqual(settings.historyLimit, 20)

    def test_booleans(self):
        """
        C{allow-guests} takes the usual spellings of yes and no.
        """
        for text, value in [("yes", True), ("No", False), ("on", True),
                            ("off", False), ("true", True), ("0", False)]:
            path = self.writeConfig("[chatd]\nallow-guests = %s\n" % (text,))
            self.assertEqual(parse("--config", path).allowGuests, value, text)

    def test_exampleFile(self):
        """
        The example config file (from the source tree, or as installed) parses,
        and shows every key.
        """
        places = [
            os.path.join(os.path.dirname(os.path.dirname(chatd.__file__)), "etc"),
            os.path.join(sys.prefix, "share", "chatd"),
        ]
        examples = [
            os.path.join(place, "chatd.conf.example")
            for place in places
            if os.path.exists(os.path.join(place, "chatd.conf.example"))
        ]
        if not examples:
            raise SkipTest("chatd.conf.example is neither in etc/ nor installed")
        example = examples[0]
        self.assertEqual(readConfigFile(example), {"data-dir": "/var/lib/chatd"})
        with open(example) as f:
            text = f.read()
        for key in config.FIELDS:
            self.assertTrue(
                re.search(r"^#?\s*%s\s*=" % (re.escape(key),), text, re.MULTILINE),
                key,
            )


class UsageErrorTests(SynchronousTestCase):
    """
    Every bad setting, from the command line or the file, is a L{UsageError}
    whose message says what is wrong.
    """

    def assertRefused(self, args, *fragments):
        """
        Parsing C{args} raises a L{UsageError} whose message holds every one of
        C{fragments}.
        """
        error = self.assertRaises(UsageError, parse, *args)
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def writeConfig(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_badSeconds(self):
        """
        Durations must be positive, finite numbers.
        """
        self.assertRefused(["--idle-timeout", "soon"], "'soon' is not a number")
        self.assertRefused(["--idle-timeout", "-1"], "positive")
        self.assertRefused(["--idle-warning", "0"], "positive")
        self.assertRefused(["--idle-timeout", "nan"], "positive")
        self.assertRefused(["--idle-timeout", "inf"], "positive")

    def test_idleWarningAfterTimeout(self):
        """
        The idle warning must come before the idle timeout.
        """
        self.assertRefused(
            ["--idle-warning", "30"], "idle-warning (30) must be shorter"
        )
        self.assertRefused(
            ["--idle-warning", "5", "--idle-timeout", "4"], "idle-timeout (4)"
        )

    def test_badRate(self):
        """
        A rate limit is a positive whole number of messages over a positive
        number of seconds.
        """
        self.assertRefused(["--rate-limit", "5"], "MESSAGES/SECONDS")
        self.assertRefused(["--rate-limit", "5/x"], "'x' is not a number")
        self.assertRefused(["--rate-limit", "0/5"], "between 1 and")
        self.assertRefused(["--rate-limit", "1.5/5"], "'1.5' is not a whole")

    def test_badSizes(self):
        """
        Frame and queue sizes are whole numbers of bytes from 1024 to the
        largest 32-bit length.
        """
        self.assertRefused(["--max-frame", "big"], "not a whole number")
        self.assertRefused(["--max-frame", "100"], "between 1024 and 4294967295")
        self.assertRefused(["--max-frame", str(2**32)], "between 1024")
        self.assertRefused(["--send-queue", "1.5"], "not a whole number")

    def test_sendQueueBelowFrame(self):
        """
        The send queue must hold at least one largest frame.
        """
        self.assertRefused(
            ["--max-frame", "65536", "--send-queue", "4096"],
            "send-queue (4096) must be at least max-frame (65536)",
        )

    def test_badHistoryLimit(self):
        """
        The default history length is from 1 to the most HISTORY returns.
        """
        self.assertRefused(["--history-limit", "0"], "between 1 and")
        self.assertRefused(["--history-limit", "501"], "must be at most 500")

    def test_badBcryptCost(self):
        """
        The bcrypt cost is from 4 to 31.
        """
        self.assertRefused(["--bcrypt-cost", "3"], "between 4 and 31")
        self.assertRefused(["--bcrypt-cost", "32"], "between 4 and 31")

    def test_badDatabase(self):
        """
        A database URL the store cannot use is refused.
        """
        self.assertRefused(["--db", "nonsense"], "unsupported database URL")
        self.assertRefused(["--db", "sqlite:"], "no database path")

    def test_emptyDataDir(self):
        """
        The data directory must be named.
        """
        self.assertRefused(["--data-dir", " "], "expected a value")

    def test_badEndpoints(self):
        """
        Endpoint strings that do not describe a server endpoint are refused,
        with the endpoint named.
        """
        self.assertRefused(["--binary", "carrier-pigeon:4017"], "'carrier-pigeon:4017'")
        self.assertRefused(["--binary", "tcp:port"], "cannot use endpoint 'tcp:port'")
        self.assertRefused(
            ["--binary", "tcp:4017:colour=blue"], "'tcp:4017:colour=blue'"
        )

    def test_missingCertificate(self):
        """
        An C{ssl:} endpoint naming a key file that does not exist is refused,
        unless the file is one the data directory will generate.
        """
        missing = os.path.abspath(self.mktemp())
        self.assertRefused(
            ["--binary", "ssl:4017:privateKey=%s" % (missing,)], missing
        )
        settings = parse(
            "--data-dir", "fresh",
            "--binary", "ssl:4019:privateKey=fresh/tls/server.key"
            ":certKey=fresh/tls/server.crt",
        )
        self.assertEqual(settings.binary[0][:9], "ssl:4019:")

    def test_missingConfigFile(self):
        """
        A config file that cannot be read is refused.
        """
        missing = self.mktemp()
        self.assertRefused(
            ["--config", missing], "cannot read config file", missing
        )

    def test_unknownKey(self):
        """
        A key chatd does not know, such as a misspelt one, is refused.
        """
        path = self.writeConfig("[chatd]\nidle-timeuot = 30\n")
        self.assertRefused(
            ["--config", path], path, "unknown key 'idle-timeuot'", "idle-timeout"
        )

    def test_optionOnlyKeys(self):
        """
        C{config} is not a key of the file.
        """
        path = self.writeConfig("[chatd]\nconfig = other.conf\n")
        self.assertRefused(["--config", path], "unknown key 'config'")

    def test_badValueInFile(self):
        """
        A bad value in the file is reported with the file and the key.
        """
        path = self.writeConfig("[chatd]\nallow-guests = perhaps\n")
        self.assertRefused(
            ["--config", path], path, "allow-guests", "'perhaps' is not yes or no"
        )

    def test_contradictionInFile(self):
        """
        Values that contradict each other are refused from the file too.
        """
        path = self.writeConfig("[chatd]\nidle-warning = 40\n")
        self.assertRefused(["--config", path], "idle-warning (40) must be shorter")

    def test_noSection(self):
        """
        A file without a C{[chatd]} section is refused.
        """
        self.assertRefused(
            ["--config", self.writeConfig("")], "has no [chatd] section"
        )
        self.assertRefused(
            ["--config", self.writeConfig("idle-timeout = 30\n")],
            "cannot parse config file",
        )

    def test_unknownSection(self):
        """
        A section other than C{[chatd]} is refused.
        """
        path = self.writeConfig("[chatd]\n[chat]\nidle-timeout = 30\n")
        self.assertRefused(["--config", path], "unknown section [chat]")

    def test_duplicateKey(self):
        """
        A key given twice in the file is refused.
        """
        path = self.writeConfig("[chatd]\nmax-frame = 2048\nmax-frame = 4096\n")
        self.assertRefused(["--config", path], "cannot parse", "max-frame")


class FakeService(Service):
    """
    A child service that records whether it was started.
    """

    def __init__(self):
        self.privileged = False

    def privilegedStartService(self):
        self.privileged = True
        Service.privilegedStartService(self)


class ListenWhenReadyTests(SynchronousTestCase):
    """
    L{ListenWhenReady} holds its children back until the core is ready.
    """

    def setUp(self):
        self.ready: Deferred = Deferred()
        self.failures: List[Failure] = []
        self.listeners = ListenWhenReady(lambda: self.ready, self.failures.append)
        self.child = FakeService()
        self.child.setServiceParent(self.listeners)

    def test_waitsForReady(self):
        """
        The children start when the core is ready, not before, and not in the
        privileged phase.
        """
        self.listeners.privilegedStartService()
        self.listeners.startService()
        self.assertFalse(self.child.privileged)
        self.assertFalse(self.child.running)
        self.ready.callback(None)
        self.assertTrue(self.child.running)

    def test_failureLeavesChildrenDown(self):
        """
        When the core fails to start, the children stay down and the start is
        reported as failed.
        """
        self.listeners.startService()
        self.ready.errback(RuntimeError("no database"))
        self.assertFalse(self.child.running)
        [failure] = self.failures
        self.assertEqual(str(failure.value), "no database")

    def test_stopBeforeReady(self):
        """
        Stopping before the core is ready stops nothing that did not start, and
        readiness afterwards starts nothing.
        """
        self.listeners.startService()
        self.successResultOf(self.listeners.stopService())
        self.ready.callback(None)
        self.assertFalse(self.child.running)

    def test_stopAfterReady(self):
        """
        Stopping after the core is ready stops the children.
        """
        self.listeners.startService()
        self.ready.callback(None)
        self.successResultOf(self.listeners.stopService())
        self.assertFalse(self.child.running)


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeService} builds a service tree that listens once the core is ready.
    """

    def setUp(self):
        self.dataDir = os.path.join(self.mktemp(), "data")
        self.reactor = MemoryReactorClock()

    def makeService(self, *args):
        """
        Parse C{args} with a temporary data directory and an in-memory store,
        and make the service on a memory reactor.
        """
        options = Options()
        options.parseOptions(["--data-dir", self.dataDir, "--db", "memory:", *args])
        return makeService(options, reactor=self.reactor)

    def test_tree(self):
        """
        The service holds the core first, then the listeners, then the
        collector's thresholds.
        """
        service = self.makeService("--binary", "tcp:0", "--text", "none", "--web", "none")
        self.assertTrue(IService.providedBy(service))
        core, listeners, collector = list(service)
        self.assertIsInstance(core, ChatService)
        self.assertIsInstance(listeners, ListenWhenReady)
        self.assertIsInstance(collector, CollectorThresholds)
        self.assertEqual(core.settings, replace(
            Settings(), dataDir=self.dataDir, binary=("tcp:0",), db="memory:"))

    def test_listens(self):
        """
        Once started and ready, the service listens on every C{--binary}
        endpoint with the binary protocol, and stops listening when stopped.
        """
        service = self.makeService(
            "--binary", "tcp:0:interface=127.0.0.1",
            "--binary", "tcp:4019:interface=\\:\\:1",
            "--text", "none", "--web", "none",
        )
        service.privilegedStartService()
        self.assertEqual(self.reactor.tcpServers, [])
        service.startService()
        core = list(service)[0]
        self.successResultOf(core.whenReady())
        self.assertEqual(
            [(port, interface) for port, _, _, interface in self.reactor.tcpServers],
            [(0, "127.0.0.1"), (4019, "::1")],
        )
        for _, factory, _, _ in self.reactor.tcpServers:
            assert isinstance(factory, BinaryFactory)
            self.assertIs(factory.service, core)
        self.successResultOf(service.stopService())
        self.assertEqual(
            [child.running for child in list(service)[1]], [False, False]
        )

    def test_preparesDataDir(self):
        """
        Making the service creates the data directory with its key and
        certificate.
        """
        self.makeService("--binary", "tcp:0")
        self.assertEqual(
            sorted(os.listdir(self.dataDir)), ["at-rest.key", "tls"]
        )

    def test_defaultListener(self):
        """
        Without listener options, the binary and text doors listen with TLS on
        ports 4017 and 4018, presenting the data directory's certificate, and
        the web door on loopback port 8017.
        """
        service = self.makeService()
        service.startService()
        [(port, tls, _, interface), (textPort, textTLS, _, _),
         (webPort, site, _, webInterface)] = self.reactor.tcpServers
        self.assertEqual((webPort, webInterface), (8017, "127.0.0.1"))
        self.assertIsInstance(site, Site)
        assert isinstance(tls, HandingOffTLSFactory)
        assert isinstance(textTLS, HandingOffTLSFactory)
        factory, contextFactory = tls.wrappedFactory, tls.contextFactory
        textFactory = textTLS.wrappedFactory
        self.assertEqual((port, interface, textPort), (4017, "", 4018))
        self.assertIsInstance(factory, BinaryFactory)
        self.assertIsInstance(textFactory, TextFactory)
        with open(os.path.join(self.dataDir, "tls", "server.crt"), "rb") as f:
            generated = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(contextFactory.certificate.to_cryptography(), generated)

    def test_tlsListenersRestricted(self):
        """
        Every TLS listener offers only AEAD suites under TLS 1.2.
        """
        service = self.makeService("--web", "none")
        service.startService()
        for contextFactory in tlsContexts(self.reactor):
            names = SSL.Connection(contextFactory.getContext()).get_cipher_list()
            self.assertNotIn("ECDHE-ECDSA-AES128-SHA", names)
            self.assertIn("ECDHE-ECDSA-AES128-GCM-SHA256", names)

    def test_tlsGroups(self):
        """
        C{--tls-groups} sets the key-exchange groups of every TLS listener;
        by default a client offering OpenSSL's default groups gets the
        post-quantum hybrid (X25519 where this OpenSSL lacks it).
        """
        hybrid = "X25519MLKEM768" in knownGroups("?X25519MLKEM768:X25519").split(":")
        default = "X25519MLKEM768" if hybrid else "x25519"
        for args, agreed in [((), default), (("--tls-groups", "X25519:P-256"), "x25519"),
                             (("--tls-groups", "P-256"), "secp256r1")]:
            self.reactor = MemoryReactorClock()
            service = self.makeService("--web", "none", *args)
            service.startService()
            self.assertEqual(len(tlsContexts(self.reactor)), 2)
            for contextFactory in tlsContexts(self.reactor):
                client = handshake(contextFactory.getContext(), SSL.Context(SSL.TLS_METHOD))
                self.assertEqual(groupName(client), agreed)

    def test_tlsGroupsParsed(self):
        """
        C{--tls-groups} is kept as given, checked against this OpenSSL: an
        unknown group is refused, naming it.
        """
        self.assertEqual(parse().tlsGroups, "?X25519MLKEM768:X25519:P-256:P-384")
        self.assertEqual(parse("--tls-groups", " P-384:?NO-SUCH:X25519 ").tlsGroups,
                         "P-384:?NO-SUCH:X25519")
        error = self.assertRaises(UsageError, parse, "--tls-groups", "X25519:NO-SUCH")
        self.assertIn("NO-SUCH", str(error))


class ClusterOptionsTests(SynchronousTestCase):
    """
    C{--redis} makes the node part of a cluster; C{--key-file} gives it the
    cluster's at-rest key.
    """

    def setUp(self):
        self.dataDir = self.mktemp()
        self.reactor = MemoryReactorClock()

    def makeService(self, *args):
        options = Options()
        options.parseOptions(["--data-dir", self.dataDir, "--db", "memory:", "--binary",
                              "tcp:0", "--text", "none", "--web", "none", *args])
        return makeService(options, reactor=self.reactor)

    def test_parsed(self):
        """
        Both options land in the settings; neither is set by default.
        """
        settings = parse("--redis", "redis://10.1.2.3:6380/4", "--key-file", "/k")
        self.assertEqual((settings.redis, settings.keyFile), ("redis://10.1.2.3:6380/4", "/k"))
        self.assertEqual((parse().redis, parse().keyFile), ("", ""))

    def test_badRedis(self):
        """
        A Redis URL that is not C{redis://host:port/N} is refused, saying so.
        """
        for url in ["localhost:6379", "redis://", "redis://h:x/0", "redis://h/zero"]:
            error = self.assertRaises(UsageError, parse, "--redis", url)
            self.assertIn("redis://host:port/N", str(error))

    def test_redisFanout(self):
        """
        With C{--redis} the core publishes through a L{RedisFanout} to that
        Redis; without it, it is its own cluster.
        """
        from chatd.fanout.local import LocalFanout
        try:
            from chatd.fanout.redis import RedisFanout
        except ImportError:
            raise SkipTest("the Redis fan-out needs txredisapi")
        core = list(self.makeService("--redis", "redis://127.0.0.1:6390/5"))[0]
        self.assertIsInstance(core.fanout, RedisFanout)
        self.assertEqual(core.fanout.where, "127.0.0.1:6390/5")
        self.assertIsInstance(list(self.makeService())[0].fanout, LocalFanout)

    def test_keyFile(self):
        """
        C{--key-file} reads the at-rest keys from that file, and makes no key in
        the data directory.
        """
        keyFile = os.path.abspath(self.mktemp())
        key = generateKey()
        with open(os.open(keyFile, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key + b"\n")
        self.makeService("--key-file", keyFile)
        self.assertNotIn("at-rest.key", os.listdir(self.dataDir))
        dataDir = prepare(self.dataDir, keyFile=keyFile)
        self.assertEqual(dataDir.keys.ids, AtRestKeys([key]).ids)
        self.assertEqual(dataDir.keyFilePath, keyFile)

    def test_missingKeyFile(self):
        """
        A key file that does not exist stops chatd, saying so in one line: a
        node making a key of its own could not read the cluster's history.
        """
        error = self.assertRaises(SystemExit, self.makeService, "--key-file", "/nonexistent/k")
        self.assertTrue(str(error).startswith("chatd cannot start: key file /nonexistent/k"))
