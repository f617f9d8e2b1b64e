"""
Tests for L{chatd.observer.OneShotObserver}.
"""

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.observer import OneShotObserver


class OneShotObserverTests(SynchronousTestCase):
    """
    Every observer sees the one outcome, however late it asks.
    """

    def test_beforeAndAfter(self):
        """
        Observers that asked before L{OneShotObserver.fire} and one that asks
        after it get the same result.
        """
        observer = OneShotObserver()
        early = [observer.whenFired(), observer.whenFired()]
        self.assertEqual([d.called for d in early], [False, False])
        observer.fire("done")
        self.assertEqual([self.successResultOf(d) for d in early], ["done", "done"])
        self.assertEqual(self.successResultOf(observer.whenFired()), "done")

    def test_observersAreIndependent(self):
        """
        A callback one observer adds does not change what another sees.
        """
        observer = OneShotObserver()
        first, second = observer.whenFired(), observer.whenFired()
        first.addCallback(lambda result: result + " and changed")
        observer.fire("done")
        self.assertEqual(self.successResultOf(first), "done and changed")
        self.assertEqual(self.successResultOf(second), "done")
        self.assertEqual(self.successResultOf(observer.whenFired()), "done")

    def test_failure(self):
        """
        A failure reaches every observer, before and after, each its own.
        """
        observer = OneShotObserver()
        early = observer.whenFired()
        observer.fire(Failure(ValueError("broken")))
        self.failureResultOf(early, ValueError)
        self.failureResultOf(observer.whenFired(), ValueError)
        self.failureResultOf(observer.whenFired(), ValueError)
