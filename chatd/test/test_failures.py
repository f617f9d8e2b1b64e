"""
Tests for L{chatd.failures}: failed logins and room passwords refuse only the
address they come from, slow an account down across addresses, never limit a
valid login signature, and hold their slot before a password is checked.
"""

from twisted.internet.defer import maybeDeferred

from chatd import loginsig
from chatd.credentials import Credentials
from chatd.errors import Forbidden, RateLimited
from chatd.failures import FailureLimits
from chatd.fanout.local import LocalFanout
from chatd.test.fakes import makeService, privateKey
from chatd.test.test_service import NO_IDLE, CoreTestCase, HeldThreads

ATTACKER, OWNER = "10.0.0.66", "10.0.0.2"


class DelayTests(CoreTestCase):
    """
    L{FailureLimits.delay}: nothing for the free failures, then a wait that
    doubles up to C{login-delay}.
    """

    def test_growsAndStops(self):
        """
        With a login limit of 5 and a longest delay of 10 s, the waits after
        0 to 9 failures are 0, 0, 0, 0, 0, 1, 2, 4, 8 and 10 seconds, and
        stay at 10 however many more there are.
        """
        limits = FailureLimits(LocalFanout(self.clock), self.clock, self.service.settings)
        self.assertEqual([limits.delay(n) for n in range(10)],
                         [0, 0, 0, 0, 0, 1, 2, 4, 8, 10])
        self.assertEqual(limits.delay(10**6), 10)


class LockOutTests(CoreTestCase):
    """
    Strangers cannot lock an account or a room out: their failures refuse
    only their own address.
    """

    settings = NO_IDLE

    def setUp(self):
        CoreTestCase.setUp(self)
        self.account("alice").closed()

    def garbageAuth(self, address, times):
        """
        C{times} AUTH requests for alice with a garbage signature from
        C{address}.

        @return: the classes of their refusals.
        """
        refusals = []
        for _ in range(times):
            session = self.connect(address)
            session.hello(1)
            session.challenge()
            refusals.append(type(self.refusal(session.auth, "alice", b"x" * 256)))
        return refusals

    def signedIn(self, address):
        session = self.connect(address)
        session.hello(1)
        challenge = session.challenge()
        self.result(session.auth, "alice",
                    loginsig.signAuth(privateKey("alice"), challenge, "alice"))
        return session

    def test_garbageAuthDoesNotLockTheOwnerOut(self):
        """
        Five garbage AUTH frames from one address refuse that address only:
        the owner logs in from another address at once with a valid
        signature, and with the right password after a one-second wait.
        """
        self.assertEqual(self.garbageAuth(ATTACKER, 6), [Forbidden] * 5 + [RateLimited])
        self.assertEqual(self.signedIn(OWNER).user.name, "alice")
        owner = self.connect(OWNER)
        owner.hello(1)
        d = owner.login("alice", "correct horse")
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(owner.user.name, "alice")

    def test_validSignatureIsNeverLimited(self):
        """
        Even from an address that has used up its failures, for the account
        and in all, a valid signature logs in, with no wait.
        """
        self.garbageAuth(ATTACKER, 5)
        for name in ("bob", "carol", "dave"):
            for _ in range(5):
                session = self.connect(ATTACKER)
                session.hello(1)
                self.refusal(session.login, name, "wrong password")
        session = self.connect(ATTACKER)
        session.hello(1)
        self.assertIsInstance(self.refusal(session.login, "alice", "correct horse"),
                              RateLimited)
        self.assertEqual(self.signedIn(ATTACKER).user.name, "alice")

    def test_wrongPasswordsFromManyAddressesSlowDown(self):
        """
        Across addresses, wrong passwords are never refused: each beyond the
        first five waits longer before it is checked (1, 2, 4, 8, then 10 s),
        and the right one still gets in, after at most the longest wait.
        """
        waits = []
        for i in range(10):
            session = self.connect("10.0.1.%d" % (i,))
            session.hello(1)
            d = maybeDeferred(session.login, "alice", "wrong password")
            waited = 0.0
            while not d.called:
                self.clock.advance(0.5)
                waited += 0.5
            self.failureResultOf(d, Forbidden)
            waits.append(waited)
        self.assertEqual(waits, [0] * 5 + [1, 2, 4, 8, 10])
        owner = self.connect(OWNER)
        owner.hello(1)
        d = owner.login("alice", "correct horse")
        self.clock.advance(9)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)

    def test_rightPasswordsDoNotCount(self):
        """
        Logins with the right password give their slot back: many of them
        from one address leave its limits and the account's delay untouched.
        """
        for _ in range(30):
            self.login("alice", address=ATTACKER).closed()
        session = self.connect(ATTACKER)
        session.hello(1)
        self.assertIsInstance(self.refusal(session.login, "alice", "wrong password"), Forbidden)

    def test_roomPasswordFromAnotherAddress(self):
        """
        Wrong room passwords from many addresses slow a room's joins down; the
        right password from yet another address still joins.
        """
        owner = self.account("owner", address="10.0.0.9")
        self.result(owner.create, "#p", "sesame")
        for i in range(8):
            guest = self.guest("g%d" % (i,), "10.0.1.%d" % (i,))
            d = maybeDeferred(guest.join, "#p", "wrong")
            self.clock.advance(10)
            self.failureResultOf(d, Forbidden)
        carol = self.guest("carol", OWNER)
        d = carol.join("#p", "sesame")
        self.assertNoResult(d)
        self.clock.advance(10)
        self.assertEqual([name for name, key in self.successResultOf(d)], ["carol"])

    def test_closedWhileWaiting(self):
        """
        A session that closes while its login waits is not logged in.
        """
        self.garbageAuth("10.0.1.1", 5)
        session = self.connect(OWNER)
        session.hello(1)
        d = session.login("alice", "correct horse")
        session.closed()
        self.clock.advance(1)
        self.failureResultOf(d)
        self.assertIsNone(session.user)


class ParallelTests(CoreTestCase):
    """
    A failure slot is held before the password check starts, so parallel
    attempts run no more checks than the limits allow.
    """

    settings = NO_IDLE

    def buildService(self):
        self.threads = HeldThreads()
        self.credentials = Credentials(4, runInThread=self.threads)
        return makeService(credentials=self.credentials, **NO_IDLE)

    def passwordChecks(self):
        """
        How many bcrypt checks have started (and are held) so far.
        """
        return sum(1 for _, f, _ in self.threads.pending if f == self.credentials._check)

    def parallel(self, request, address, times):
        """
        Start C{request} on C{times} new sessions from C{address} while the
        threads are held.
        """
        self.threads.held = True
        results = []
        for _ in range(times):
            session = self.connect(address)
            session.hello(1)
            results.append(maybeDeferred(request, session))
        return results

    def test_sixtyParallelWrongPasswords(self):
        """
        Sixty wrong passwords for one account from one address, sent at once,
        run five bcrypt checks; the other 55 are refused before any check.
        The owner, from another address, then logs in.
        """
        self.account("alice").closed()
        results = self.parallel(lambda s: s.login("alice", "wrong password"), ATTACKER, 60)
        self.assertEqual(self.passwordChecks(), 5)
        refused = [d for d in results if d.called]
        self.assertEqual(len(refused), 55)
        for d in refused:
            self.failureResultOf(d, RateLimited)
        self.threads.release()
        for d in results:
            if d not in refused:
                self.failureResultOf(d, Forbidden)
        owner = self.connect(OWNER)
        owner.hello(1)
        d = owner.login("alice", "correct horse")
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(owner.user.name, "alice")

    def test_sixtyParallelWrongRoomPasswords(self):
        """
        Sixty wrong passwords for one room from one address, sent at once, run
        five bcrypt checks.
        """
        owner = self.account("owner", address="10.0.0.9")
        self.result(owner.create, "#p", "sesame")
        results = self.parallel(lambda s: s.join("#p", "wrong"), ATTACKER, 60)
        self.assertEqual(self.passwordChecks(), 5)
        self.threads.release()
        self.assertEqual(sorted(type(self.failureResultOf(d).value).__name__ for d in results),
                         ["Forbidden"] * 5 + ["RateLimited"] * 55)

    def test_parallelAcrossAccountsStopsAtTheAddressLimit(self):
        """
        Wrong passwords for many accounts from one address, sent at once, run
        no more checks than the address limit (20).
        """
        names = iter(range(60))
        results = self.parallel(lambda s: s.login("user%d" % next(names), "wrong password"),
                                ATTACKER, 60)
        self.assertEqual(self.passwordChecks(), 20)
        self.threads.release()
        self.assertEqual(sorted(type(self.failureResultOf(d).value).__name__ for d in results),
                         ["Forbidden"] * 20 + ["RateLimited"] * 40)
