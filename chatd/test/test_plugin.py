# -*- test-case-name: chatd.test.test_plugin -*-
"""
Tests for the twistd plugin in C{twisted/plugins/chatd_plugin.py}.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from chatd import tap


class PluginTests(SynchronousTestCase):
    """
    twistd finds chatd among its plugins.
    """

    def test_serviceMaker(self):
        """
        L{getPlugins} yields a service maker named C{chatd} whose options and
        service come from L{chatd.tap}.
        """
        makers = [
            maker for maker in getPlugins(IServiceMaker) if maker.tapname == "chatd"
        ]
        self.assertTrue(makers)
        # A source checkout on sys.path beside an installed copy gives two.
        for maker in makers:
            self.assertIs(maker.options, tap.Options)
            self.assertIs(maker.makeService, tap.makeService)
            self.assertTrue(maker.description)
