# -*- test-case-name: chatd.test.test_packaging -*-
"""
Tests for what a packager and an operator see of chatd itself: its licence,
its metadata, its console scripts and the C{--version} of its commands.
"""

import configparser
import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

import chatd
from chatd import tap
from chatd.client import __main__ as client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__)))


def _setupConfig():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    return parser


class VersionTests(SynchronousTestCase):
    """
    C{--version} prints chatd's version, not Twisted's.
    """

    def _version(self, options):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as raised:
            options.parseOptions(["--version"])
        self.assertEqual(raised.exception.code, 0)
        return out.getvalue()

    def test_server(self):
        """
        C{twistd chatd --version} prints C{chatd} and L{chatd.__version__}.
        """
        self.assertEqual(self._version(tap.Options()), "chatd %s\n" % (chatd.__version__,))

    def test_client(self):
        """
        C{python -m chatd.client --version} prints C{chatd} and
        L{chatd.__version__}.
        """
        self.assertEqual(self._version(client.Options()),
                         "chatd %s\n" % (chatd.__version__,))


class MetadataTests(SynchronousTestCase):
    """
    setup.cfg names the licence, the authors and the project's address, and
    installs the console scripts.
    """

    def test_licence(self):
        """
        The licence in the metadata is the one in LICENSE, and README.rst says
        which it is.
        """
        metadata = _setupConfig()["metadata"]
        self.assertEqual(metadata["license"], "MIT")
        self.assertEqual(metadata["license_files"], "LICENSE")
        with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
            self.assertTrue(f.read().startswith("MIT License"))
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            self.assertIn("MIT licence", f.read())
        self.assertTrue(metadata["author"])
        self.assertTrue(metadata["url"].startswith("https://"))

    def test_consoleScripts(self):
        """
        C{chatd-client} runs the terminal client's L{client.script}.
        """
        scripts = dict(
            line.split(" = ")
            for line in _setupConfig()["options.entry_points"]["console_scripts"].split("\n")
            if line)
        self.assertEqual(scripts["chatd-client"], "chatd.client.__main__:script")
        self.assertTrue(callable(client.script))
