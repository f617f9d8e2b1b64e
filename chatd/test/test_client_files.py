"""
Tests for L{chatd.client.files}: file transfer between clients through the
real server core and binary front door, connected in memory (L{iosim}), with
disk and cipher work run inline; and the pieces that make received files safe.
"""

import hashlib
import json
import os
from typing import Any, Dict, List

from twisted.internet.defer import Deferred, maybeDeferred

from chatd import e2e, transfer
from chatd.client.files import (
    Incoming,
    Outgoing,
    TransferError,
    fileInfo,
    formatSize,
    placeFile,
    safeName,
)
from chatd.protocols import opcodes
from chatd.protocols.opcodes import Op
from chatd.test.fakes import privateKey
from chatd.test.test_client import ClientTestCase, der

# Small chunks, so a small file makes many of them and the window matters.
CHUNK = 1000


def content(size, seed=b"chatd"):
    """
    C{size} bytes that differ from chunk to chunk (so a chunk written in the
    wrong place shows), made without randomness so failures repeat.
    """
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class FileTestCase(ClientTestCase):
    """
    Clients with their own download folders and small chunks.

    @ivar settings: overrides for the server's settings (C{window=1}).
    """

    # A transfer takes a round trip per window of chunks: more rounds than
    # chat needs.
    rounds = 100000

    def account(self, name, room=None, *args, **kwargs):
        client, ui = ClientTestCase.account(self, name, room, *args, **kwargs)
        client.files.downloads = os.path.abspath(self.mktemp())
        client.files.chunkSize = CHUNK
        return client, ui

    def three(self, room="lobby"):
        """
        Alice, bob and carol in C{room}, each having seen the others join.
        """
        clients = [self.account(name) for name in ("alice", "bob", "carol")]
        self.room(room, *clients)
        return clients

    def write(self, data, name="report.pdf"):
        """
        A file holding C{data}, for alice to send.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def offer(self, client, kind, name, path):
        out = self.do(client.sendFile(kind, name, path))
        return out

    def saved(self, client):
        """
        The files in C{client}'s download folder (hidden ones too), by name.
        """
        folder = client.files.downloads
        if not os.path.isdir(folder):
            return {}
        result = {}
        for name in os.listdir(folder):
            with open(os.path.join(folder, name), "rb") as f:
                result[name] = f.read()
        return result

    def ended(self, ui):
        return [(text, failed) for _, _, text, failed in ui.take("ended")]


class RoomTransferTests(FileTestCase):
    """
    A file to a room of three.
    """

    def test_roomOfThree(self):
        """
        Alice offers a file to the room; bob and carol are told who offers
        what; both accept, and both end up with the very same bytes under the
        name alice's file had; alice sees progress and a clear result.
        """
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = self.three()
        data = content(50 * CHUNK + 123)
        out = self.offer(alice, "room", "lobby", self.write(data))
        self.assertEqual((out.number, out.size, out.chunks), (1, len(data), 51))
        for ui in (bobUI, carolUI):
            self.assertEqual(ui.take(), [("offered", 1, "alice", "lobby", "report.pdf", len(data))])
        self.do(bob.acceptFile())
        self.assertEqual(aliceUI.take(), [])
        incoming = self.do(carol.acceptFile(1))
        self.assertEqual(incoming.label(), 'file #1 "report.pdf" from alice')
        self.flush()

        for client, ui in ((bob, bobUI), (carol, carolUI)):
            path = os.path.join(client.files.downloads, "report.pdf")
            self.assertEqual(self.saved(client), {"report.pdf": data})
            self.assertEqual(self.ended(ui), [
                ('saved file #1 "report.pdf" from alice (48.9 KiB, SHA-256 checked) as %s'
                 % (path,), False)])
        events = aliceUI.take()
        self.assertEqual(events[0], ("notice", 'file #1 "report.pdf" to #lobby: 2 recipients '
                                               'accepted; sending 48.9 KiB'))
        progress = [done for kind, _, _, done, _ in events[1:-1]]
        self.assertEqual(progress, [min(len(data), CHUNK * i) for i in range(1, 52)])
        self.assertEqual(events[-1][0], "ended")
        self.assertIn('file #1 "report.pdf" to #lobby delivered; 2 recipients accepted it',
                      events[-1][2])
        self.assertFalse(events[-1][3])
        self.assertEqual(alice.fileTransfers(), [])
        self.assertEqual(bob.fileTransfers(), [])

    def test_staleRecipientsRetry(self):
        """
        When someone joins between alice's view of the room and her offer, the
        server refuses the file envelope (0x09); alice seals it again for the
        members the server names, and the newcomer is offered the file too.
        """
        (alice, aliceUI), (bob, bobUI) = [self.account(name) for name in ("alice", "bob")]
        self.room("lobby", (alice, aliceUI), (bob, bobUI))
        carol, carolUI = self.account("carol")
        # Carol's JOIN reaches the server, but alice reads nothing before
        # she offers.
        joining = Deferred.fromCoroutine(carol.join("lobby"))
        carol.endpoint.pumps[-1].flush()
        self.successResultOf(joining)
        carolUI.take()
        sealed = []

        def recording(f, *args, **kwargs):
            if f is e2e.seal:
                sealed.append(sorted(args[3]))
            return maybeDeferred(f, *args, **kwargs)
        alice.runInThread = recording
        self.offer(alice, "room", "lobby", self.write(b"for all three"))
        self.assertEqual(sealed, [["alice", "bob"], ["alice", "bob", "carol"]])
        self.assertEqual(carolUI.take("offered"), [("offered", 1, "alice", "lobby", "report.pdf",
                                                    13)])
        self.assertEqual(len(bobUI.take("offered")), 1)
        self.do(bob.acceptFile())
        self.do(carol.acceptFile())
        self.assertEqual(self.saved(carol), {"report.pdf": b"for all three"})
        self.assertIn("2 recipients accepted it", self.ended(aliceUI)[0][0])

    def test_roomByHashName(self):
        """
        The console shows a room C{lobby} as C{#lobby}; a file sent to
        C{#lobby} finds it.
        """
        (alice, _), (bob, bobUI), _ = self.three()
        out = self.offer(alice, "room", "#lobby", self.write(b"x"))
        self.assertEqual(out.where, ("room", "lobby"))

    def test_emptyFile(self):
        """
        An empty file travels as one empty chunk and is saved empty.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        out = self.offer(alice, "room", "lobby", self.write(b"", "empty.txt"))
        self.assertEqual(out.chunks, 1)
        self.do(bob.acceptFile())
        self.do(carol.declineFile())
        self.flush()
        self.assertEqual(self.saved(bob), {"empty.txt": b""})
        self.assertIn("delivered", self.ended(aliceUI)[0][0])

    def test_directTransfer(self):
        """
        A file to one user, who need not share a room with the sender.
        """
        alice, aliceUI = self.account("alice")
        bob, bobUI = self.account("bob")
        data = content(3 * CHUNK)
        self.offer(alice, "user", "BOB", self.write(data, "notes.txt"))
        self.assertEqual(bobUI.take("offered"), [("offered", 1, "alice", None, "notes.txt",
                                                  len(data))])
        self.do(bob.acceptFile(1))
        self.flush()
        self.assertEqual(self.saved(bob), {"notes.txt": data})
        self.assertIn('file #1 "notes.txt" to bob delivered; 1 recipient accepted it',
                      self.ended(aliceUI)[0][0])


class _WindowTestCase(FileTestCase):
    """
    Watching the server take chunks, to see that the sender keeps within the
    window it allows.
    """

    def watchChunks(self):
        """
        Record, for every chunk the server takes, its index, the highest index
        allowed then, and the most chunks any recipient had in flight.
        """
        seen = []
        original = transfer.Transfer.chunk

        def chunk(self, session, index, data):
            allowed = self.limit
            original(self, session, index, data)
            inFlight = max(len(r.inFlight) for r in self.recipients.values())
            seen.append((index, allowed, inFlight))
        self.patch(transfer.Transfer, "chunk", chunk)
        return seen

    def sendToTwo(self):
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = self.three()
        seen = self.watchChunks()
        data = content(40 * CHUNK + 1)
        self.offer(alice, "room", "lobby", self.write(data))
        self.do(bob.acceptFile())
        self.do(carol.acceptFile())
        self.flush()
        self.assertEqual(self.saved(bob), {"report.pdf": data})
        self.assertEqual(self.saved(carol), {"report.pdf": data})
        self.assertIn("delivered", self.ended(aliceUI)[0][0])
        return seen


class WindowOneTests(_WindowTestCase):
    """
    A server whose window is 1: stop-and-wait.
    """

    settings = {"window": 1}

    def test_windowOne(self):
        """
        With a window of 1 (stop and wait) the sender sends each chunk only
        after the one before it was acknowledged by everyone.
        """
        seen = self.sendToTwo()
        self.assertEqual([index for index, _, _ in seen], list(range(41)))
        for index, allowed, inFlight in seen:
            self.assertLessEqual(index, allowed)
            self.assertLessEqual(inFlight, 1)


class WindowEightTests(_WindowTestCase):
    """
    A server with the default window of 8.
    """

    settings = {"window": 8}

    def test_windowEight(self):
        """
        With a window of 8 the sender runs ahead, but never past the window.
        """
        seen = self.sendToTwo()
        self.assertEqual([index for index, _, _ in seen], list(range(41)))
        for index, allowed, inFlight in seen:
            self.assertLessEqual(index, allowed)
            self.assertLessEqual(inFlight, 8)
        self.assertEqual(max(inFlight for _, _, inFlight in seen), 8)


class AnswerTests(FileTestCase):
    """
    Declining, and offers nobody takes.
    """

    def test_decline(self):
        """
        Bob declines and carol accepts: only carol gets the file, and alice
        hears it went to one recipient.
        """
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = self.three()
        data = content(5 * CHUNK)
        self.offer(alice, "room", "lobby", self.write(data))
        declined = self.do(bob.declineFile())
        self.assertEqual(declined.label(), 'file #1 "report.pdf" from alice')
        self.do(carol.acceptFile())
        self.flush()
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.saved(carol), {"report.pdf": data})
        self.assertIn("1 recipient accepted it", self.ended(aliceUI)[0][0])
        self.assertEqual(bob.fileTransfers(), [])

    def test_allDecline(self):
        """
        When everyone declines, the sender is told the offer is cancelled.
        """
        (alice, aliceUI), (bob, _), (carol, _) = self.three()
        self.offer(alice, "room", "lobby", self.write(b"data"))
        self.do(bob.declineFile(1))
        self.do(carol.declineFile(1))
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: no recipient accepted', True)])
        self.assertEqual(alice.fileTransfers(), [])

    def test_offerExpires(self):
        """
        An offer nobody answers expires: the recipients hear it was withdrawn,
        the sender that nobody accepted; a late /accept is refused.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        self.offer(alice, "room", "lobby", self.write(b"data"))
        bobUI.take()
        self.advance(61, step=10)
        self.assertEqual(self.ended(bobUI), [
            ("file offer #1 from alice withdrawn: offer expired", True)])
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: no recipient accepted', True)])
        error = self.runFails(bob.acceptFile(1), Exception)
        self.assertIn("no file offer #1", str(error))

    def test_senderWithdraws(self):
        """
        A sender that cancels before anyone answered withdraws the offer.
        """
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = self.three()
        self.offer(alice, "room", "lobby", self.write(b"data"))
        bobUI.take()
        self.do(alice.cancelFile(1))
        self.assertEqual(self.ended(bobUI), [
            ("file offer #1 from alice withdrawn: cancelled by the sender", True)])
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: cancelled by you', True)])
        self.assertEqual(bob.fileTransfers(), [])

    def test_acceptWithoutOffer(self):
        """
        /accept and /decline with nothing offered say so.
        """
        bob, _ = self.account("bob")
        self.assertIn("no file offer is waiting", str(self.runFails(bob.acceptFile(), Exception)))
        self.assertIn("no file offer #4", str(self.runFails(bob.declineFile(4), Exception)))

    def test_unreadableFile(self):
        """
        A path that cannot be read is refused before anything is offered.
        """
        alice, _ = self.account("alice", "lobby")
        error = self.runFails(alice.sendFile("room", "lobby", "/nonexistent/file"), Exception)
        self.assertIn("cannot read /nonexistent/file", str(error))
        error = self.runFails(alice.sendFile("room", "lobby", os.getcwd()), Exception)
        self.assertIn("cannot read", str(error))


class IntegrityTests(FileTestCase):
    """
    What the receiver refuses, and that it keeps nothing then.
    """

    def test_corruptedChunk(self):
        """
        A chunk altered on the way to bob does not decrypt: bob cancels, keeps
        nothing (not even the temporary file) and says why; carol, whose copy
        was not touched, gets the file, and alice's transfer completes.
        """
        (alice, aliceUI), (bob, bobUI), (carol, carolUI) = self.three()
        original = bob.protocol.onEvent

        def tampering(op, values):
            if op == Op.CHUNK and values[1] == 3:
                data = bytearray(values[2])
                data[10] ^= 0x01
                values = values[:2] + (bytes(data),)
            original(op, values)
        bob.protocol.onEvent = tampering
        data = content(8 * CHUNK)
        self.offer(alice, "room", "lobby", self.write(data))
        self.do(bob.acceptFile())
        self.do(carol.acceptFile())
        self.flush()
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice failed: chunk 3 does not decrypt (altered or not '
             'from this file); nothing was kept', True)])
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.saved(carol), {"report.pdf": data})
        self.assertIn("delivered", self.ended(aliceUI)[0][0])

    def test_chunkFromAnotherPlace(self):
        """
        A chunk moved to another index (a valid chunk of the same file) does not
        decrypt either: the index is in its nonce and associated data.
        """
        (alice, _), (bob, bobUI), (carol, _) = self.three()
        original = bob.protocol.onEvent
        first = []

        def swapping(op, values):
            if op == Op.CHUNK:
                if values[1] == 0:
                    first.append(values[2])
                elif values[1] == 1:
                    values = (values[0], 1, first[0])
            original(op, values)
        bob.protocol.onEvent = swapping
        self.offer(alice, "room", "lobby", self.write(content(3 * CHUNK)))
        self.do(bob.acceptFile())
        self.do(carol.acceptFile())
        self.flush()
        self.assertIn("chunk 1 does not decrypt", self.ended(bobUI)[0][0])
        self.assertEqual(self.saved(bob), {})

    def test_wrongHashNotKept(self):
        """
        A file that does not hash to the signed SHA-256 is not kept.
        """
        (alice, _), (bob, bobUI), (carol, _) = self.three()
        original = Outgoing.prepare

        def lying(out):
            original(out)
            out.sha256 = "0" * 64
        self.patch(Outgoing, "prepare", lying)
        self.patch(Outgoing, "unchanged", lambda out: True)
        self.offer(alice, "room", "lobby", self.write(content(2 * CHUNK)))
        self.do(bob.acceptFile())
        self.do(carol.declineFile())
        self.flush()
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice failed: the file\'s SHA-256 is not the one the '
             'sender signed; nothing was kept', True)])
        self.assertEqual(self.saved(bob), {})

    def test_fileChangedWhileSending(self):
        """
        A file that changes after it was offered is cancelled by its sender
        rather than delivered under a hash that no longer fits it.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        path = self.write(content(3 * CHUNK))
        self.offer(alice, "room", "lobby", path)
        with open(path, "r+b") as f:
            f.write(b"changed")
        self.do(bob.acceptFile())
        self.do(carol.declineFile())
        self.flush()
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: the file changed while it was being '
             'sent', True)])
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice cancelled: cancelled by the sender: the file '
             'changed while it was being sent; nothing was kept', True)])
        self.assertEqual(self.saved(bob), {})

    def inject(self, client, *values):
        client.protocol.dataReceived(opcodes.event(Op.OFFERED, *values))
        self.flush()

    def sealFile(self, info, sender="alice", to=("room", "lobby"), readers=("alice", "bob")):
        return e2e.seal(sender, privateKey(sender), to, {name: der(name) for name in readers},
                        json.dumps(info).encode(), domain=e2e.FILE,
                        ts=int(self.clock.seconds() * 1000))

    def test_offerSizesChecked(self):
        """
        An offer whose sizes differ from the signed ones, one signed with the
        message domain instead of the file domain (refused for its signature,
        checked before anything is decrypted), and one signed by another key
        are dropped, said so, and declined.
        """
        (alice, _), (bob, bobUI), (carol, _) = self.three()
        info = {"name": "x", "size": 10, "sha256": "0" * 64, "chunk_size": 10, "chunks": 1,
                "file_key": "A" * 43 + "="}
        self.inject(bob, 5, "alice", 0, "lobby", 20, 2, 10, self.sealFile(info))
        asMessage = e2e.seal("alice", privateKey("alice"), ("room", "lobby"),
                             {"bob": der("bob")}, json.dumps(info).encode(),
                             ts=int(self.clock.seconds() * 1000))
        self.inject(bob, 6, "alice", 0, "lobby", 10, 1, 10, asMessage)
        forged = e2e.seal("alice", privateKey("mallory"), ("room", "lobby"),
                          {"bob": der("bob")}, json.dumps(info).encode(), domain=e2e.FILE,
                          ts=int(self.clock.seconds() * 1000))
        self.inject(bob, 7, "alice", 0, "lobby", 10, 1, 10, forged)
        self.assertEqual(bobUI.take(), [
            ("dropped", "dropped a file offer from alice in lobby: the server says 20 bytes in 2 "
                        "chunks of 10, the signed envelope 10 bytes in 1 chunks of 10; declined"),
            ("dropped", "dropped a file offer from alice in lobby: envelope: signature does not "
                        "verify; declined"),
            ("dropped", "dropped a file offer from alice in lobby: envelope: signature does not "
                        "verify; declined"),
        ])
        self.assertEqual(bob.fileTransfers(), [])

    def test_fileInfo(self):
        """
        The plaintext of a file envelope must have every field, of its type.
        """
        good = {"name": "x", "size": 10, "sha256": "a" * 64, "chunk_size": 4, "chunks": 3,
                "file_key": "A" * 43 + "="}
        self.assertEqual(fileInfo(json.dumps(good).encode(), 10, 3, 4),
                         ("x", "a" * 64, bytes(32)))
        changes: List[Dict[str, Any]] = [
            {"name": 3}, {"size": "10"}, {"sha256": "A" * 64}, {"file_key": "AAAA"},
            {"chunks": 2}, {"file_key": "!" * 44}]
        for change in changes:
            bad = dict(good, **change)
            self.assertRaises(TransferError, fileInfo, json.dumps(bad).encode(), 10,
                              bad["chunks"], 4)
        self.assertRaises(TransferError, fileInfo, b'{"name": "a", "name": "b"}', 10, 3, 4)
        self.assertRaises(TransferError, fileInfo, b"[]", 10, 3, 4)


class NameTests(FileTestCase):
    """
    Whatever name the sender signs, the file lands in the download folder,
    under a name that cannot mislead, and replaces nothing.
    """

    def sendNamed(self, name, alice, bob, data=b"payload"):
        """
        Alice sends C{data} to bob under C{name}, as a hostile client could
        (ours names files after their path).
        """
        original = Outgoing.prepare

        def named(out):
            original(out)
            out.name = name
        self.patch(Outgoing, "prepare", named)
        self.offer(alice, "user", "bob", self.write(data, "innocent.txt"))
        self.do(bob.acceptFile())
        self.flush()

    def test_hostileNames(self):
        """
        A name that climbs out of the folder, one with path separators and one
        that hides its extension with a right-to-left override are each saved
        inside the folder under a harmless name.
        """
        alice, _ = self.account("alice")
        bob, bobUI = self.account("bob")
        names = {"../../etc/passwd": "_.._etc_passwd",
                 "a/b\\c.txt": "a_b_c.txt",
                 "evil\u202egnp.exe": "evil_gnp.exe",
                 "..": "file",
                 "/": "_"}
        for hostile, expected in names.items():
            self.sendNamed(hostile, alice, bob, data=hostile.encode())
            ended = self.ended(bobUI)
            self.assertEqual(len(ended), 1)
            self.assertIn("as %s" % (os.path.join(bob.files.downloads, expected),), ended[0][0])
        self.assertEqual(self.saved(bob), {expected: hostile.encode()
                                           for hostile, expected in names.items()})
        parent = os.path.dirname(bob.files.downloads)
        self.assertEqual(sorted(os.listdir(parent)), [os.path.basename(bob.files.downloads)])

    def test_noSilentOverwrite(self):
        """
        A file of the same name as one already there is saved as C{name (1)},
        then C{name (2)}; the first is untouched.
        """
        alice, _ = self.account("alice")
        bob, bobUI = self.account("bob")
        os.makedirs(bob.files.downloads)
        with open(os.path.join(bob.files.downloads, "report.pdf"), "wb") as f:
            f.write(b"mine")
        for data in (b"first", b"second"):
            self.offer(alice, "user", "bob", self.write(data))
            self.do(bob.acceptFile())
            self.flush()
        self.assertEqual(self.saved(bob), {"report.pdf": b"mine", "report (1).pdf": b"first",
                                           "report (2).pdf": b"second"})
        self.assertIn("as %s" % (os.path.join(bob.files.downloads, "report (2).pdf"),),
                      self.ended(bobUI)[-1][0])

    def test_acceptIntoFolder(self):
        """
        /accept ID DIR saves into DIR, made when missing.
        """
        alice, _ = self.account("alice")
        bob, bobUI = self.account("bob")
        self.offer(alice, "user", "bob", self.write(b"here"))
        folder = os.path.join(os.path.abspath(self.mktemp()), "sub")
        incoming = self.do(bob.acceptFile(1, folder))
        self.assertEqual(incoming.folder, folder)
        self.flush()
        with open(os.path.join(folder, "report.pdf"), "rb") as f:
            self.assertEqual(f.read(), b"here")

    def test_safeName(self):
        """
        L{safeName} leaves ordinary names alone and makes hostile ones harmless.
        """
        self.assertEqual(safeName("Report 2024 (final).pdf"), "Report 2024 (final).pdf")
        self.assertEqual(safeName("caf\u00e9.txt"), "caf\u00e9.txt")
        self.assertEqual(safeName("cafe\u0301.txt"), "caf\u00e9.txt")
        self.assertEqual(safeName(".bashrc"), "bashrc")
        self.assertEqual(safeName("."), "file")
        self.assertEqual(safeName(""), "file")
        self.assertEqual(safeName("a\x00b\x1b[2Jc\nd"), "a_b_[2Jc_d")
        self.assertEqual(safeName("zero\u200bwidth\u2066.txt"), "zero_width_.txt")
        self.assertEqual(safeName("C:\\Windows\\x.dll"), "C__Windows_x.dll")
        self.assertEqual(safeName("nul.txt"), "_nul.txt")
        self.assertEqual(safeName("trailing. . "), "trailing")
        long = safeName("\u00e9" * 300 + ".tar.gz")
        self.assertLessEqual(len(long.encode("utf-8")), 200)
        self.assertTrue(long.endswith("\u00e9.gz"))
        self.assertLessEqual(len(safeName("x" * 1000).encode("utf-8")), 200)

    def test_placeFile(self):
        """
        L{placeFile} never replaces a file, and falls back to an exclusive
        create where hard links are refused.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)

        def temporary(data):
            path = os.path.join(folder, ".part-%d" % (len(os.listdir(folder)),))
            with open(path, "wb") as f:
                f.write(data)
            return path

        self.assertEqual(placeFile(temporary(b"1"), folder, "a.txt"),
                         os.path.join(folder, "a.txt"))

        def refuse(source, target):
            raise PermissionError("no links here")
        self.patch(os, "link", refuse)
        self.assertEqual(placeFile(temporary(b"2"), folder, "a.txt"),
                         os.path.join(folder, "a (1).txt"))
        self.assertEqual(sorted(os.listdir(folder)), ["a (1).txt", "a.txt"])
        with open(os.path.join(folder, "a.txt"), "rb") as f:
            self.assertEqual(f.read(), b"1")


class CancelTests(FileTestCase):
    """
    Transfers stopped halfway.
    """

    def holdThreads(self, client):
        """
        Make C{client}'s thread work wait in C{held} until released.
        """
        held = []

        def later(f, *args, **kwargs):
            d: Deferred = Deferred()
            held.append((d, f, args, kwargs))
            return d
        client.runInThread = later
        return held

    def release(self, client, held):
        client.runInThread = maybeDeferred
        while held:
            d, f, args, kwargs = held.pop(0)
            maybeDeferred(f, *args, **kwargs).chainDeferred(d)
        self.flush()

    def test_senderCancels(self):
        """
        The sender cancels halfway: the recipient is told, and deletes what it
        had written.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        self.offer(alice, "room", "lobby", self.write(content(30 * CHUNK)))
        self.do(bob.acceptFile())
        held = self.holdThreads(bob)
        self.do(carol.declineFile())
        self.assertTrue(held)
        self.assertEqual([name for name in self.saved(bob)][0][:7], ".chatd-")
        cancelled = self.do(alice.cancelFile(1))
        self.assertEqual(cancelled.label(), 'file #1 "report.pdf" to #lobby')
        self.release(bob, held)
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice cancelled: cancelled by the sender; nothing was '
             'kept', True)])
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: cancelled by you', True)])

    def test_recipientCancels(self):
        """
        A recipient that cancels keeps nothing; the others go on.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        data = content(30 * CHUNK)
        self.offer(alice, "room", "lobby", self.write(data))
        self.do(bob.acceptFile())
        held = self.holdThreads(bob)
        self.do(carol.acceptFile())
        self.do(bob.cancelFile(1))
        self.release(bob, held)
        self.flush()
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice cancelled by you; nothing was kept', True)])
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.saved(carol), {"report.pdf": data})
        self.assertIn("delivered", self.ended(aliceUI)[0][0])

    def test_senderDisconnects(self):
        """
        When the sender's connection drops, the recipients are told and keep
        nothing; the sender hears the transfer failed.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        self.offer(alice, "room", "lobby", self.write(content(30 * CHUNK)))
        self.do(bob.acceptFile())
        held = self.holdThreads(bob)
        self.do(carol.declineFile())
        alice.endpoint.drop()
        self.flush()
        self.release(bob, held)
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice cancelled: the sender is gone; nothing was kept',
             True)])
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: the connection was lost', True)])

    def test_recipientStops(self):
        """
        A recipient that stops (the person exits) halfway deletes its
        temporary file before its stop is over.
        """
        (alice, aliceUI), (bob, bobUI), (carol, _) = self.three()
        self.offer(alice, "room", "lobby", self.write(content(30 * CHUNK)))
        self.do(bob.acceptFile())
        held = self.holdThreads(bob)
        self.do(carol.declineFile())
        stopping = bob.stop()
        self.flush()
        self.assertNoResult(stopping)
        self.assertEqual(len(self.saved(bob)), 1)
        self.release(bob, held)
        self.successResultOf(stopping)
        self.assertEqual(self.saved(bob), {})
        self.assertEqual(self.ended(bobUI), [
            ('file #1 "report.pdf" from alice failed: the connection was lost; nothing was '
             'kept', True)])
        self.assertEqual(self.ended(aliceUI), [
            ('file #1 "report.pdf" to #lobby cancelled: no recipients left', True)])

    def test_formatSize(self):
        self.assertEqual([formatSize(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 30)],
                         ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB"])

    def test_incomingDiscardTwice(self):
        """
        Deleting a received file's temporary file twice is harmless.
        """
        incoming = Incoming(1, None, 9, "alice", None, "x", 1, 1, 1, "0" * 64, bytes(32), "id")
        folder = os.path.abspath(self.mktemp())
        incoming.open(folder)
        incoming.discard()
        incoming.discard()
        self.assertEqual(os.listdir(folder), [])
