"""
End-to-end: the real C{twistd chatd} process, for what only a real process shows
(the plugin found by twistd, first-start files on disk, the TLS listener with the
generated certificate, a clean shutdown).
"""

import os
import stat

from cryptography.x509.oid import ExtensionOID
from twisted.internet import defer, reactor
from twisted.internet.endpoints import SSL4ClientEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.basic import Int32StringReceiver
from twisted.trial.unittest import TestCase

from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.processes import connectWhenListening, freePort, spawnChatd

_SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME


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
        child = spawnChatd("twistd", workdir, "--data-dir", data, "--binary", tls,
                           "--text", "none", "--web", "none")
        self.addCleanup(child.signal, "TERM")

        protocol = await connectWhenListening(
            SSL4ClientEndpoint(reactor, "127.0.0.1", port, CertificateOptions()), _Client, child)
        op, payload = await protocol.answer
        self.assertEqual(opcodes.decodeResponse(Op.HELLO, payload), (0, ("rand0",)))
        certificate = protocol.transport.getPeerCertificate()
        self.assertIn(b"localhost", certificate.to_cryptography().extensions
                      .get_extension_for_oid(_SAN).value.public_bytes())
        protocol.transport.loseConnection()

        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(data, "at-rest.key")).st_mode), 0o600)
        self.assertTrue(os.path.exists(os.path.join(data, "chatd.sqlite")))
        await child.signal("TERM")
        self.assertIn(b"Server Shut Down", child.output)
        self.assertNotIn(b"Traceback", child.output)
