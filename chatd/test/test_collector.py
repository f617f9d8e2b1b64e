"""
Tests for L{chatd.collector}.
"""

from twisted.trial.unittest import SynchronousTestCase

from chatd.collector import THRESHOLDS, CollectorThresholds


class FakeCollector:
    """
    The two calls of L{gc} the service makes, on thresholds of its own.
    """

    def __init__(self):
        self.thresholds = (700, 10, 10)

    def get_threshold(self):
        return self.thresholds

    def set_threshold(self, *thresholds):
        self.thresholds = thresholds


class CollectorThresholdsTests(SynchronousTestCase):
    """
    L{CollectorThresholds} raises the thresholds while it runs.
    """

    def test_startAndStop(self):
        """
        Started, it sets chatd's thresholds; stopped, it gives back the ones
        it found.
        """
        collector = FakeCollector()
        service = CollectorThresholds(collector=collector)
        service.startService()
        self.assertEqual(collector.thresholds, THRESHOLDS)
        service.stopService()
        self.assertEqual(collector.thresholds, (700, 10, 10))

    def test_stopWithoutStart(self):
        """
        Stopping a service that never started changes nothing.
        """
        collector = FakeCollector()
        CollectorThresholds(collector=collector).stopService()
        self.assertEqual(collector.thresholds, (700, 10, 10))
