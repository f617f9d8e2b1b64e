# -*- test-case-name: chatd.test.test_replay -*-
"""
The envelopes a client has seen, kept with its keys so that a server cannot
show it an old envelope again after it restarts.

The rule, the same in the browser client (chatd/web/replay.js):

- the last L{SEEN_IDS} envelopes (sender and id, with their signed time)
  received live, or sent, are remembered; one seen again is a replay;
- when one is forgotten to make room, its signed time raises a horizon, and
  a live envelope signed more than L{SKEW_MS} before the horizon is a replay
  too (it is older than anything still remembered; the slack is twice the
  5 minutes a server allows a sender's clock, so that an honest message
  never falls below it);
- a signed time is counted as at most the client's own clock, so that one
  envelope dated in the future cannot raise the horizon over honest ones;
- but a message that repeats, identical, one this run has shown or sent
  (and is not older than the horizon) is no replay: it is dropped without a
  word. That is its sender's retry: a server that delivers before it
  commits may have shown the members a message whose commit then failed,
  and the sender sends the same envelope again (docs/protocol.rst, "What an
  acknowledgement promises"). Identical means the same L{signedDigest}: the
  bytes the signature covers (the header, built from the parsed values, and
  the ciphertext) and the signature; not the bytes received, which the
  server writes anew for each reader, with key maps no signature covers.
  The same sender and id with other content (another signature: a sender
  that signed two messages under one id, or a server that mixed them up)
  is still a replay, and said; so is an id this run cannot compare (one
  remembered from an earlier run: the file keeps no digest), and a file
  offer (each is a transfer of its own, declined either way).

An account's window lives in C{keys/NAME.seen} in the client's home, mode
0600: one line per envelope, C{TS SENDER ID}, appended as it is seen (so that
several clients sharing the home each add their own), and rewritten to one
window of what it holds and what this client saw, with a C{horizon TS} line
first, once it holds twice the window. Lines that cannot be read are skipped.
A guest's window is kept in memory only, like its key; so are the digests,
for the envelopes of the window that this run saw.
"""

import hashlib
import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from twisted.logger import Logger

from chatd import e2e
from chatd.client.privatefiles import makePrivateDirectory, writePrivately
from chatd.names import fold, isUserName

log = Logger()

SEEN_IDS = 4096
SKEW_MS = 600_000

_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def signedDigest(envelope: e2e.Envelope, domain: bytes = e2e.MESSAGE) -> bytes:
    """
    What tells a sender's retry from another envelope under the same id: the
    SHA-256 of the bytes its signature covers (for C{domain}) and of the
    signature, which chatd/web/replay.js computes alike.
    """
    signed = envelope.header(domain) + envelope.encryptedMessage.encode("ascii")
    return hashlib.sha256(signed + b"\n" + envelope.signature.encode("ascii")).digest()


class SeenEnvelopes:
    """
    A window of seen envelopes, persisted once L{attach}ed to a file.

    @ivar horizon: the highest signed time forgotten, in ms (0 while nothing
        was).
    """

    def __init__(self, window=SEEN_IDS):
        self._window = window
        self._seen = OrderedDict()
        # (sender, id) to the signedDigest of what this run saw under it.
        self._digests: Dict[Tuple[str, str], bytes] = {}
        self.horizon = 0
        self._path: Optional[str] = None
        self._lines = 0

    def replayed(self, sender, envelopeId, ts):
        """
        Why an envelope received live is a replay, or L{None} when it is not.
        """
        if (fold(sender), envelopeId) in self._seen:
            return "replayed message id %s" % (envelopeId,)
        if self.older(ts):
            return ("message id %s is signed earlier than every message this device still "
                    "remembers: a replay" % (envelopeId,))
        return None

    def older(self, ts):
        """
        Whether an envelope signed at C{ts} is older than every one still
        remembered (signed more than L{SKEW_MS} before the horizon).
        """
        return ts < self.horizon - SKEW_MS

    def seen(self, sender, envelopeId):
        """
        Whether this very envelope is remembered (not merely older than the
        horizon).
        """
        return (fold(sender), envelopeId) in self._seen

    def repeats(self, sender, envelopeId, digest) -> Optional[bool]:
        """
        Whether an envelope is one this run remembered, identical: C{True}
        when its C{digest} (L{signedDigest}) is the one remembered under its
        sender and id, C{False} when another is, L{None} when this run has
        none to compare (not seen, seen in an earlier run, or a file offer).
        """
        known = self._digests.get((fold(sender), envelopeId))
        return None if known is None else known == digest

    def remember(self, sender, envelopeId, ts, now, digest=None):
        """
        Remember an envelope shown (or sent), signed at C{ts}, at time C{now}
        (both in ms), and write it down when attached.

        @param digest: its L{signedDigest}, for L{repeats}; L{None} for one
            whose repeat is never to pass in silence (a file offer).
        """
        ts = min(ts, now)
        if not self._add(fold(sender), envelopeId, ts):
            return
        if digest is not None:
            self._digests[(fold(sender), envelopeId)] = digest
        if self._path is None:
            return
        try:
            self._append("%d %s %s\n" % (ts, fold(sender), envelopeId))
            if self._lines > 2 * self._window:
                self._compact()
        except OSError as e:
            log.warn("cannot keep seen envelopes in {path}: {error}", path=self._path, error=e)

    def attach(self, path):
        """
        Keep this window in C{path} from now on: what the file holds comes
        first, then what was seen before (as a guest, before logging in).
        """
        self._path = path
        try:
            self._compact()
        except OSError as e:
            log.warn("cannot keep seen envelopes in {path}: {error}", path=path, error=e)

    def _add(self, sender, envelopeId, ts):
        key = (sender, envelopeId)
        if key in self._seen:
            return False
        self._seen[key] = ts
        while len(self._seen) > self._window:
            forgottenKey, forgotten = self._seen.popitem(last=False)
            self._digests.pop(forgottenKey, None)
            self.horizon = max(self.horizon, forgotten)
        return True

    def _read(self):
        """
        What the file holds: its horizon, and its envelopes in the order they
        were written.
        """
        horizon = 0
        entries: List[Tuple[Tuple[str, str], int]] = []
        assert self._path is not None, "read before attach()"
        try:
            f = open(self._path, encoding="ascii", errors="replace")
        except FileNotFoundError:
            return horizon, entries
        with f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[0] == "horizon" and fields[1].isdigit():
                    horizon = max(horizon, int(fields[1]))
                elif (len(fields) == 3 and fields[0].isdigit() and isUserName(fields[1])
                      and _ID.fullmatch(fields[2])):
                    entries.append(((fold(fields[1]), fields[2]), int(fields[0])))
        return horizon, entries

    def _append(self, line):
        assert self._path is not None, "written before attach()"
        makePrivateDirectory(os.path.dirname(self._path))
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="ascii") as f:
            f.write(line)
        self._lines += 1

    def _compact(self):
        """
        Make this window and the file one: what the file holds (other
        clients sharing the home may have added to it), then what only this
        window holds (seen before attaching, or not written); and write it
        back as one window.
        """
        horizon, entries = self._read()
        inFile = {key for key, _ in entries}
        entries += [(key, ts) for key, ts in self._seen.items() if key not in inFile]
        self._seen = OrderedDict()
        self.horizon = max(self.horizon, horizon)
        for (sender, envelopeId), ts in entries:
            self._add(sender, envelopeId, ts)
        lines = ["horizon %d\n" % (self.horizon,)] + [
            "%d %s %s\n" % (ts, sender, envelopeId)
            for (sender, envelopeId), ts in self._seen.items()]
        assert self._path is not None, "compacted before attach()"
        writePrivately(self._path, "".join(lines).encode("ascii"))
        self._lines = len(lines)
