"""
Tests for what chatd logs (L{chatd.logs}): the lines an operator needs, and
never a password or what people wrote.
"""

import base64
import io
import json
import os
import sys
from typing import List

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.application.service import Application
from twisted.internet.address import IPv4Address
from twisted.logger import ILogObserver, LogEvent, eventAsJSON, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import provider

from chatd import datadir, e2e
from chatd.client.connection import certificateFingerprint
from chatd.logs import LoggedService, certificateOf, jsonObserver, logListening
from chatd.options import Options
from chatd.protocols.text import TextFactory
from chatd.protocols.website import makeSite
from chatd.tap import makeService as makeTapService
from chatd.test.fakes import makeService, privateKey, publicDer
from chatd.test.test_text import LineClient

PASSWORDS = ("alice-secret-1", "bob-secret-22", "wrong-guess-333")
PLAINTEXT = "the plan is to meet at noon"


def capture(testCase):
    """
    Collect every log event from now to the end of C{testCase}.
    """
    events: List[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return events


def b64(data):
    return base64.b64encode(data).decode()


class _AnsweredRequest(DummyRequest):
    """
    A L{DummyRequest} with what a L{Site}'s access log reads of an answer.
    """

    code = 200
    sentLength = 0


def getRoot():
    """
    A request for C{/} as a L{Site} logs it, answered 200.
    """
    request = _AnsweredRequest([b""])
    request.client = IPv4Address("TCP", "127.0.0.1", 5000)
    request.clientproto = b"HTTP/1.1"
    return request


class SecretsTests(SynchronousTestCase):
    """
    Registrations, logins, failed logins and lock-outs are logged with the
    address, and no password or message text is in any event.
    """

    def test_noSecrets(self):
        """
        Drive a registration, a failed and a good login, a lock-out and a room
        message through the text door: the log names who and from where, and
        neither a password nor the message's text appears in any event,
        formatted or as JSON with every field.
        """
        events = capture(self)
        service = makeService(loginLimit=(1, 60.0))
        factory = TextFactory(service)
        alice = LineClient(factory, host="192.0.2.1")
        alice.ok("CMD::/register alice %s %s" % (PASSWORDS[0], b64(publicDer("alice"))))
        bob = LineClient(factory, host="192.0.2.2")
        bob.ok("CMD::/register bob %s %s" % (PASSWORDS[1], b64(publicDer("bob"))))
        other = LineClient(factory, host="192.0.2.4")
        other.ok("CMD::/login alice " + PASSWORDS[0])
        mallory = LineClient(factory, host="192.0.2.3")
        self.assertEqual(mallory.status("CMD::/login alice " + PASSWORDS[2]), 5)
        self.assertEqual(mallory.status("CMD::/login alice " + PASSWORDS[2]), 2)
        alice.ok("CMD::/join #x")
        bob.ok("CMD::/join #x")
        members = {"alice": publicDer("alice"), "bob": publicDer("bob")}
        alice.ok(b"MSG::" + e2e.seal("alice", privateKey("alice"), ("room", "#x"), members,
                                      PLAINTEXT.encode(), ts=int(service.now())))
        bob.takeEvents()

        lines = [formatEvent(event) for event in events]
        everything = "\n".join(lines + [eventAsJSON(event) for event in events])
        for secret in PASSWORDS + (PLAINTEXT,):
            self.assertNotIn(secret, everything)
        for expected in ["registered alice from 192.0.2.1",
                         "registered bob from 192.0.2.2",
                         "failed login as 'alice' from 192.0.2.3",
                         "login as 'alice' from 192.0.2.3 refused: too many failures",
                         "alice logged in from 192.0.2.4"]:
            self.assertIn(expected, lines)


class AccessLogTests(SynchronousTestCase):
    """
    The web door keeps no access log unless given a file for one.
    """

    def test_noAccessLog(self):
        """
        A request to the web door logs nothing by default.
        """
        site = makeSite(makeService(), None, None)
        site.startFactory()
        self.addCleanup(site.stopFactory)
        events = capture(self)
        site.log(getRoot())
        self.assertEqual(events, [])

    def test_accessLogFile(self):
        """
        With C{access-log}, requests are written to that file.
        """
        path = self.mktemp()
        site = makeSite(makeService(accessLog=path), None, None)
        site.startFactory()
        site.log(getRoot())
        site.stopFactory()
        with open(path) as f:
            self.assertIn('"GET http://dummy/ HTTP/1.1" 200', f.read())


class FakePort:
    def __init__(self, host, port):
        self.address = IPv4Address("TCP", host, port)

    def getHost(self):
        return self.address


class ListeningTests(SynchronousTestCase):
    """
    One line at start names every listener and the certificate's fingerprint.
    """

    def test_line(self):
        """
        The line gives each door's address, C{http://} URLs for the web door,
        and the SHA-256 of the TLS certificate as the terminal client prints it.
        """
        path = self.mktemp()
        datadir.prepare(path)
        _, certificate = datadir.tlsPaths(path)
        events = capture(self)
        logListening([("binary", FakePort("127.0.0.1", 4017)),
                      ("web", FakePort("0.0.0.0", 8017))], certificate)
        with open(certificate, "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["chatd listening: binary 127.0.0.1:4017, web http://0.0.0.0:8017/; "
             "TLS certificate SHA-256 " + certificateFingerprint(der)])

    def test_certificateOf(self):
        """
        The certificate of an C{ssl:} endpoint is its C{certKey}, else its
        C{privateKey}; other endpoints have none.
        """
        self.assertEqual(certificateOf(r"ssl:4017:privateKey=k.pem:certKey=/a\:b/c.pem"),
                         "/a:b/c.pem")
        self.assertEqual(certificateOf("ssl:4017:privateKey=both.pem"), "both.pem")
        self.assertIsNone(certificateOf("tcp:4017"))


class JSONTests(SynchronousTestCase):
    """
    C{--log-format json} hands twistd an observer writing JSON lines.
    """

    def test_component(self):
        """
        With C{--log-format json}, the service gives the twistd application an
        L{ILogObserver} that writes to C{--logfile}.
        """
        path = os.path.abspath(self.mktemp())
        # twistd's options, of which chatd's are a subcommand.
        parent = usage.Options()
        parent["logfile"] = path
        options = Options()
        options.parent = parent
        options.parseOptions(["--data-dir", self.mktemp(), "--db", "memory:",
                              "--log-format", "json"])
        top = makeTapService(options)
        application = Application("chatd")
        top.setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsInstance(top, LoggedService)
        observer({"log_format": "hello {who}", "who": "operator", "log_time": 0.0})
        observer._outFile.close()
        with open(path) as f:
            record = json.loads(f.readline())
        self.assertEqual(record["who"], "operator")

    def test_textByDefault(self):
        """
        Without it, the application keeps twistd's own log.
        """
        options = Options()
        options.parseOptions(["--data-dir", self.mktemp(), "--db", "memory:"])
        application = Application("chatd")
        makeTapService(options).setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver))

    def test_stdout(self):
        """
        Without a log file, JSON goes to standard output, one object per line.
        """
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        jsonObserver(None)({"log_format": "x", "log_time": 0.0})
        jsonObserver({"logfile": "-"})({"log_format": "y", "log_time": 0.0})
        lines = stdout.getvalue().splitlines()
        self.assertEqual([json.loads(line)["log_format"] for line in lines], ["x", "y"])

    def test_badFormat(self):
        """
        A log format other than text or json is refused, naming both.
        """
        from twisted.python.usage import UsageError
        error = self.assertRaises(UsageError, Options().parseOptions,
                                  ["--data-dir", self.mktemp(), "--log-format", "xml"])
        self.assertIn("text or json", str(error))
