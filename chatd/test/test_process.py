"""
End-to-end: the real C{twistd chatd} process, for what only a real process shows
(the plugin found by twistd, first-start files on disk, the TLS listener with the
generated certificate, a clean shutdown).
"""

import os
import signal
import socket
import stat
import sys

from cryptography.x509.oid import ExtensionOID
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import TestCase

import chatd
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op

_SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME


def freePort():
    """
    A loopback port nobody listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Twistd(ProcessProtocol):
    """
    Collects a child process's output and tells when it has ended.
    """

    def __init__(self):
        self.output = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


class _Client(Int32StringReceiver):
    """
    Sends HELLO and hands over the first frame that comes back.
    """

    def __init__(self):
        self.answer = defer.Deferred()

    def connectionMade(self):
        self.transport.write(opcodes.request(Op.HELLO))

    def stringReceived(self, body):
        if not self.answer.called:
            self.answer.callback(opcodes.parseBody(body))


class TwistdTests(TestCase):
    """
    Run C{twistd -n chatd} on a TLS loopback listener in a fresh directory.
    """

    timeout = 60

    async def test_firstStartOverTLS(self):
        """
        On first start chatd makes its data directory with a 0600 at-rest key and
        a certificate, serves HELLO over TLS with that certificate, and stops
        cleanly on SIGTERM.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        data = os.path.join(workdir, "data")
        port = freePort()
        tls = "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (
            port, os.path.join(data, "tls", "server.key"), os.path.join(data, "tls", "server.crt"))
        env = dict(os.environ,
                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__))))
        child = _Twistd()
        process = reactor.spawnProcess(
            child, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "--logfile=-", "chatd", "--data-dir", data, "--binary", tls,
             "--text", "none", "--web", "none"],
            env=env, path=workdir)
        self.addCleanup(lambda: child.ended if child.ended.called else self.stop(process, child))

        protocol = await self.connect(port, child)
        op, payload = await protocol.answer
        self.assertEqual(opcodes.decodeResponse(Op.HELLO, payload), (0, ("rand0",)))
        certificate = protocol.transport.getPeerCertificate()
        self.assertIn(b"localhost", certificate.to_cryptography().extensions
                      .get_extension_for_oid(_SAN).value.public_bytes())
        protocol.transport.loseConnection()

        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(data, "at-rest.key")).st_mode), 0o600)
        self.assertTrue(os.path.exists(os.path.join(data, "chatd.sqlite")))
        await self.stop(process, child)
        self.assertIn(b"Server Shut Down", child.output)
        self.assertNotIn(b"Traceback", child.output)

    async def connect(self, port, child, attempts=200):
        """
        Connect over TLS once the listener is up (bounded: 20 s).
        """
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, CertificateOptions())
        for _ in range(attempts):
            if child.ended.called:
                self.fail("twistd exited early:\n" + child.output.decode())
            try:
                return await connectProtocol(endpoint, _Client())
            except Exception:
                await task.deferLater(reactor, 0.1)
        self.fail("twistd never listened:\n" + child.output.decode())

    def stop(self, process, child):
        process.signalProcess(signal.SIGTERM)
        return child.ended
