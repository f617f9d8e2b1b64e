# -*- test-case-name: chatd.test.test_packaging -*-
"""
Tests for what a packager and an operator see of chatd itself: its licence,
its metadata, its console scripts and the C{--version} of its commands.
"""

import configparser
import importlib.metadata
import io
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

import chatd
from chatd import tap
from chatd.client import __main__ as client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(chatd.__file__)))


class _Packaging:
    """
    What packaging says of chatd, read where it is: C{setup.cfg}, C{LICENSE} and
    C{README.rst} beside the package in a source tree, or the installed
    distribution's metadata when the tests run from an installed copy (as CI
    runs them), where those files are not beside the package.
    """

    def __init__(self) -> None:
        setupCfg = os.path.join(ROOT, "setup.cfg")
        if os.path.exists(setupCfg):
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(setupCfg, encoding="utf-8")
            metadata = parser["metadata"]
            self.licence = metadata["license"]
            self.author = metadata["author"]
            self.url = metadata["url"]
            self.scripts = dict(
                line.split(" = ")
                for line in parser["options.entry_points"]["console_scripts"].split("\n")
                if line)
            self.licenceText = self._read("LICENSE")
            self.readme = self._read("README.rst")
        else:
            dist = importlib.metadata.distribution("chatd")
            self.licence = dist.metadata["License"] or dist.metadata["License-Expression"]
            self.author = dist.metadata["Author"]
            self.url = dist.metadata["Home-page"]
            self.scripts = {ep.name: ep.value for ep in dist.entry_points
                            if ep.group == "console_scripts"}
            self.licenceText = (dist.read_text("licenses/LICENSE")
                                or dist.read_text("LICENSE") or "")
            # The metadata is an email.message.Message; its declared protocol
            # leaves out the body, where setuptools puts the README.
            payload = dist.metadata.get_payload()  # type: ignore[attr-defined]
            self.readme = payload or dist.metadata["Description"]

    @staticmethod
    def _read(name: str) -> str:
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            return f.read()


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
        packaging = _Packaging()
        self.assertEqual(packaging.licence, "MIT")
        self.assertTrue(packaging.licenceText.startswith("MIT License"))
        self.assertIn("MIT licence", packaging.readme)
        self.assertTrue(packaging.author)
        self.assertTrue(packaging.url.startswith("https://"))

    def test_consoleScripts(self):
        """
        C{chatd-client} runs the terminal client's L{client.script}, and
        C{chatd-admin} the admin command's.
        """
        scripts = _Packaging().scripts
        self.assertEqual(scripts["chatd-client"], "chatd.client.__main__:script")
        self.assertTrue(callable(client.script))
        self.assertEqual(scripts["chatd-admin"], "chatd.admin.__main__:script")
        from chatd.admin import __main__ as admin
        self.assertTrue(callable(admin.script))
