#!/usr/bin/env python
"""
The browser client in a real browser, against the real server.

    python chatd/test/browser_check.py [--keep] [--screenshot PATH]

Starts C{twistd -n chatd} on loopback ports (binary, web and, when the server
has it, text), opens two pages of the browser client in Debian's Chromium
through Playwright (alice and bob, each with a profile of its own), runs one
stdio client (C{python -m chatd.client}, carol) from a script, and checks that
the three chat in one room: every message sent by each appears in the other
two. It also checks, in the browser: the envelope against the worked example of
docs/protocol.rst, direct messages across doors, key-only login (the key kept
in IndexedDB) and history, the key-change warning that blocks sending until the
person trusts the new key, a lying server (its WebSocket rewritten in the
page) that gives the person's own name another key and gets nothing sent, a
direct message delivered again as it was (dropped without a word) or under its
id with another signature (dropped, with a note), replayed after the page is
loaded again (dropped, with a note) and the
signed time shown rather than the server's, file transfer (or that the page degrades gracefully
where the server has none over WebSocket), and that the page fetches nothing
from anywhere but its own server. Devices (browser_devices.py): the page's
device crypto against the Python reference, a lying server's devices refused,
a second browser approved with the code it shows, messages on both, a quiet
notice and no key-change block for the new device, a direct message waiting
for someone with no page open, and an identity reset that is a loud key change.
Resends (browser_resend.py): a message the server could not store, or whose
answer never came (the connection lost), sent again as it was sealed, by the
page and on "retry", and shown once.

Needs: C{pip install playwright} (its Python package only: the browser is
Debian's C{chromium}, never a downloaded one). Every wait is bounded; every
process started is stopped. Prints one line per check and then
C{browser check: N passed, M failed}; exits 0 only when all passed.

This is a script, not a trial test: it needs a browser, which the unit tests
do not.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser_devices  # noqa: E402  (beside this script, run as a script)
import browser_resend  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = os.environ.get("CHATD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOM = "#general"
PASSWORD = "correct-horse-battery"  # the stdio client splits on spaces
WAIT_MS = 20000
START_SECONDS = 30

# What each one says; none ends in a digit (the stdio client's /expect reads a
# trailing number as its timeout).
ALICE_SAYS = "Hi all, alice here in the browser"
BOB_SAYS = "Hello from bob, also in a browser"
CAROL_SAYS = "carol on the terminal client says hi"
CAROL_DM = "psst alice, a direct message from the terminal"
ALICE_DM = "bob, this one is just for you"
AFTER_TRUST = "after verifying bob's new key"
HELD_TEXT = "bob from his new browser, held until alice checks"
REPLAYED_DM = "dave, this one must be shown only once"
SKEWED_TIME = "2001-02-03T04:05:06.000Z"
TO_BOTH = "bob to the room, for both of alice's browsers"
FROM_SECOND = "alice from her second browser"
WAITING_DM = "gina, read this when you are back"
RECOVERED = "alice again, recovered with her code"

# The launcher used while `twistd chatd` has no --web option yet: the same
# service tree as twistd builds, plus the web resource on the --web endpoint.
STAND_IN = r'''
import os, sys
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.server import Site
from chatd import tap
from chatd.protocols.website import makeWebResource
from chatd.core.service import ChatService

args = sys.argv[1:]
at = args.index("--web")
web = args[at + 1]
del args[at:at + 2]
options = tap.Options()
options.parseOptions(args)
top = tap.makeService(options, reactor)
chat = next(s for s in top if isinstance(s, ChatService))
listeners = next(s for s in top if isinstance(s, tap.ListenWhenReady))
static = os.path.join(os.path.dirname(os.path.abspath(tap.__file__)), "web")
StreamServerEndpointService(serverFromString(reactor, web),
                            Site(makeWebResource(chat, static))).setServiceParent(listeners)
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
reactor.callWhenRunning(top.startService)
reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
reactor.run()
'''


class Results:
    """
    Named checks, each passed or failed, printed as they are decided.
    """

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("ok      %s" % (name,), flush=True)
        else:
            self.failed += 1
            print("FAILED  %s%s" % (name, ": " + detail if detail else ""), flush=True)
        return ok

    def attempt(self, name, function, *args):
        """
        Run C{function} as check C{name}: it fails when it raises, returns
        L{False}, or returns a string starting with C{!} (the rest says why).
        """
        try:
            outcome = function(*args)
        except Exception as e:
            detail = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            if os.environ.get("CHATD_CHECK_DEBUG"):
                traceback.print_exc()
            return self.check(name, False, detail)
        if isinstance(outcome, str) and outcome.startswith("!"):
            return self.check(name, False, outcome[1:])
        return self.check(name, outcome is not False,
                          "" if outcome is not False else "not as expected")


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port, process, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def twistdCommand(*args):
    return [sys.executable, "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
            *args]


def serverHelp():
    try:
        result = subprocess.run(twistdCommand("chatd", "--help"), cwd=ROOT, env=environment(),
                                capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout


class Process:
    """
    A child process whose output is collected line by line, stopped for sure.
    """

    def __init__(self, command, logPath, env, stdin=subprocess.DEVNULL):
        self.log = open(logPath, "w", encoding="utf-8")
        self.lines = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
            start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        assert self.process.stdout is not None  # stdout=PIPE above
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def waitFor(self, text, seconds):
        """
        Whether a line containing C{text} was printed within C{seconds}.
        """
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                if any(text in line for line in self.lines):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self.reader.is_alive()):
                    return any(text in line for line in self.lines)
                self.changed.wait(min(left, 0.5))

    def output(self):
        with self.changed:
            return "\n".join(self.lines)

    def wait(self, seconds):
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(10) is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        self.reader.join(5)
        self.log.close()


# -- the browser side -------------------------------------------------------------

WORKED_EXAMPLE_JS = """
async () => {
  const c = await import("/crypto.js");
  const subtle = crypto.subtle;
  const K = new Uint8Array(32).map((_, i) => 0x20 + i);
  const hmac = await subtle.importKey("raw", K, {name: "HMAC", hash: "SHA-256"}, false, ["sign"]);
  const kc = c.b64(new Uint8Array(await subtle.sign("HMAC", hmac, c.utf8("chatd-commit-v1"))));
  const env = {alg: c.ALG, from: "alice", to: {room: "#general"},
               id: c.b64url(new Uint8Array(16).map((_, i) => i)), ts: 1700000000000,
               nonce: c.b64(new Uint8Array(12).map((_, i) => 0x10 + i)), kc};
  const header = c.header(c.MESSAGE, env);
  const aes = await subtle.importKey("raw", K, "AES-GCM", false, ["encrypt"]);
  const params = {name: "AES-GCM", iv: c.unb64(env.nonce), additionalData: header};
  const sealed = await subtle.encrypt(params, aes, c.utf8("hello"));
  return {id: env.id, nonce: env.nonce, kc, headerLength: header.length,
          headerHex: c.hex(header), encrypted: c.b64(new Uint8Array(sealed)),
          chunkNonce: c.hex(c.chunkNonce(7)),
          chunkAad: new TextDecoder().decode(c.chunkAad(env.id, 7))};
}
"""

SANITISE_JS = """
async () => {
  const f = await import("/files.js");
  return ["../../etc/passwd", "C:\\\\x\\\\evil.exe", "a\\u202egpj.exe", "..", "report.pdf"]
    .map(f.sanitizeFileName);
}
"""

# A running transfer's rate and time left: the rule alone, and a receiving
# card two seconds into a 4 MiB file, half of it received.
RATE_JS = """
async () => {
  const f = await import("/files.js");
  const { fileCard } = await import("/filecards.js");
  const t = 1000000;
  const rule = [
    f.rateAndTimeLeft(0, 100, [t, 0], t + 5000),
    f.rateAndTimeLeft(50, 100, [t, 0], t + 500),
    f.rateAndTimeLeft(12582912, 56623104, [t, 0], t + 10000),
    f.rateAndTimeLeft(1048576, 4194304000, [t, 0], t + 1000),
  ];
  const card = fileCard({ direction: "in", from: "bob", name: "big.iso", size: 4194304,
                          progress: 0.5, state: "receiving", started: [Date.now() - 2000, 0] });
  return { rule, card: card.querySelector(".file-rate")?.textContent ?? null };
}
"""

NON_EXTRACTABLE_JS = """
async (user) => new Promise((resolve, reject) => {
  const open = indexedDB.open("chatd");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction("identities").objectStore("identities").get(user);
    get.onerror = () => reject(get.error);
    get.onsuccess = async () => {
      const r = get.result;
      if (!r) return resolve(null);
      let exported = false;
      try { await crypto.subtle.exportKey("pkcs8", r.oaep); exported = true; } catch (e) {}
      try { await crypto.subtle.exportKey("pkcs8", r.pss); exported = true; } catch (e) {}
      resolve({oaep: r.oaep.extractable, pss: r.pss.extractable, oaepAlg: r.oaep.algorithm.name,
               pssAlg: r.pss.algorithm.name, exported, spkiBytes: r.spki.byteLength});
    };
  };
})
"""

VECTORS = os.path.join(ROOT, "chatd", "test", "vectors", "clients.json")
DEVICE_VECTORS = os.path.join(ROOT, "chatd", "test", "vectors", "devices.json")

# Every case of the shared client test vectors through the page's own code:
# the state the page keeps (state.js), pins and key changes (trust.js), the
# events' routing (events.js) and the checks of messaging.js receive.
VECTORS_JS = """
async (vectors) => {
  const e2e = await import("/crypto.js");
  const { state, fold } = await import("/state.js");
  const { SeenEnvelopes } = await import("/replay.js");
  const { addRoom } = await import("/conversations.js");
  const { incomingFor } = await import("/events.js");
  const { queueIncoming } = await import("/messaging.js");
  const { CONFIRM_CHARS, observeKey, rejectNewKey, trustNewKey } = await import("/trust.js");
  const spki = (label) => e2e.unb64(vectors.keys[label].spki);
  const me = vectors.me;
  const pkcs8 = e2e.unb64(vectors.keys[me].pkcs8);
  const key = (name, use) =>
    crypto.subtle.importKey("pkcs8", pkcs8, { name, hash: "SHA-256" }, false, [use]);
  const identity = {
    spki: spki(me), oaep: await key("RSA-OAEP", "decrypt"), pss: await key("RSA-PSS", "sign"),
  };
  // What the person sees: a message dropped without a word (null) is no
  // outcome.
  const said = (outcomes) => outcomes.filter((o) => o !== null);
  const results = [];
  for (const c of vectors.cases) {
    Object.assign(state, { me, identity, held: [], active: null });
    for (const map of [state.pins, state.alerts, state.rooms, state.dms, state.shown]) map.clear();
    state.replay = new SeenEnvelopes(vectors.rules.seenIds);
    state.replay.horizon = c.horizon;
    const room = addRoom("general");
    for (const [user, label] of [[me, me], ...Object.entries(c.pins)]) {
      await observeKey(user, spki(label));
      room.members.set(fold(user), { name: user, spki: spki(label) });
    }
    const got = [];
    for (const step of c.steps) {
      if (step.op === "deliver") {
        let envelope;
        try { envelope = JSON.parse(step.envelope); } catch (e) { envelope = step.envelope; }
        const job = incomingFor(step.kind === "room"
          ? { type: "chat_message", roomId: step.room, userId: step.sender, envelope }
          : { type: "dm", userId: step.sender, envelope });
        got.push(job ? said([await queueIncoming(job)]) : [{ outcome: "ignored" }]);
      } else if (step.op === "keyChanged") {
        // What a key change lets out of waiting shows in the conversations.
        const shown = (conv) => conv.items.filter((i) => i.type === "msg");
        const before = new Set([room, ...state.dms.values()].flatMap(shown));
        await observeKey(step.user, spki(step.key));
        await state.incoming;
        got.push([room, ...state.dms.values()].flatMap(shown).filter((i) => !before.has(i))
          .map((i) => ({ outcome: "show", sender: i.from, text: i.text, ts: i.time })));
      } else if (step.op === "accept") {
        const fp = state.alerts.get(fold(step.user)).fp;
        got.push(said(await trustNewKey(step.user, fp.replace(/ /g, "").slice(-CONFIRM_CHARS))));
      } else if (step.op === "reject") {
        got.push(rejectNewKey(step.user));
      }
    }
    results.push({ name: c.name, got });
  }
  return results;
}
"""

# Guests, as the server marks them ("guest" in member lists and events): the
# page's own member and event code, with the vectors' keys. carol is a guest
# (not pinned, marked), then an account (pinned on first sight, no warning);
# while bob's account is away a guest takes his name with another key (no
# warning, bob's pin kept), and when bob's account comes back with that key,
# it is a key change.
GUEST_JS = """
async (keys) => {
  const e2e = await import("/crypto.js");
  const { state } = await import("/state.js");
  const { addRoom, select, setMembers } = await import("/conversations.js");
  const { onEvent } = await import("/events.js");
  const spki = (label) => e2e.unb64(keys[label].spki);
  const pem = (label) => e2e.derToPem(spki(label));
  const member = (userId, label, guest) => ({ userId, publicKey: pem(label), guest });
  const joined = (userId, label, guest) =>
    onEvent({ type: "user_joined", roomId: "general", ...member(userId, label, guest) });
  const left = (userId) => onEvent({ type: "user_left", roomId: "general", userId });
  Object.assign(state, { me: "alice", identity: { spki: spki("alice") } });
  const room = addRoom("general");
  room.historyState = "loaded";
  await setMembers(room, [member("alice", "alice", false), member("bob", "bob", false),
                          member("carol", "carol", true)], false);
  select(room);
  const tag = document.querySelector("#member-list li[data-user='carol'] .tag.guest");
  const out = { guestPinned: state.pins.has("carol"), guestTag: tag !== null };
  await left("carol");
  await joined("carol", "mallory", false);
  out.accountPinned = e2e.equalBytes(state.pins.get("carol")?.spki ?? [], spki("mallory"));
  await left("bob");
  await joined("bob", "bob-new", true);
  out.alertsForGuest = [...state.alerts.keys()];
  out.bobPinKept = e2e.equalBytes(state.pins.get("bob").spki, spki("bob"));
  await left("bob");
  await joined("bob", "bob-new", false);
  out.alertsForAccount = [...state.alerts.keys()];
  return out;
}
"""

EXPECTED_HEADER = (
    "chatd-e2e-v1\nRSA-OAEP-256/A256GCM/PS256\nalice\nroom:#general\nAAECAwQFBgcICQoLDA0ODw\n"
    "1700000000000\nEBESExQVFhcYGRob\nTfBFtg3tEmdZTPtaljI9CbPsxSn3ccIn8mn5oVQstFI=\n")


class Browser:
    """
    The pages of one run, and what they did that they should not have.
    """

    def __init__(self, playwright, base):
        self.base = base
        # Playwright starts Chromium with a new, empty --user-data-dir of its
        # own (and removes it afterwards); each context is a fresh profile.
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60000)
        self.contexts = []
        self.bases = [base]  # the servers whose pages are open
        self.foreign = []
        self.errors = []

    def newContext(self, viewport=None):
        context = self.browser.new_context(viewport=viewport or {"width": 1360, "height": 820},
                                           accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        context.on("request", self._request)
        self.contexts.append(context)
        return context

    def _request(self, request):
        url = request.url
        own = any(url.startswith(base) or url.startswith(base.replace("http", "ws", 1))
                  for base in self.bases)
        if not (own or url.startswith("blob:") or url.startswith("data:")):
            self.foreign.append(url)

    def page(self, context, name, base=None):
        page = context.new_page()
        page.on("pageerror", lambda e: self.errors.append("%s: %s" % (name, e)))

        def console(message):
            if message.type == "error":
                self.errors.append("%s console: %s" % (name, message.text))
        page.on("console", console)
        if base and base not in self.bases:
            self.bases.append(base)
        page.goto(base or self.base, wait_until="load")
        return page

    def close(self):
        for context in self.contexts:
            try:
                context.close()
            except Exception:
                pass
        try:
            self.browser.close()
        except Exception:
            pass


def signIn(page, user, password, register):
    """
    Sign C{page} in as C{user}; when C{register}, returns the recovery code
    the page shows once.
    """
    page.fill("#login-user", user)
    page.fill("#login-pass", password)
    page.click("#btn-register" if register else "#btn-login")
    page.wait_for_selector("#app-screen:not(.hidden)", timeout=60000)
    page.wait_for_function("name => document.querySelector('#me-name').textContent === name",
                           arg=user)
    if register:
        # The recovery code is shown once, in a dialog that waits for the person.
        shown = page.locator("#recovery-dialog[open] #recovery-code")
        shown.wait_for()
        code = shown.inner_text().strip()
        page.click("#recovery-done")
        return code
    return None


def joinRoom(page, room):
    page.click("#btn-join-open")
    page.fill("#join-room", room)
    page.click("#join-submit")
    page.wait_for_selector("#room-list li.active[data-conv='%s']" % room)
    page.wait_for_selector("#join-dialog", state="hidden")


def say(page, text):
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")
    sent = page.locator("#messages .message:not(.pending):not(.failed) .text", has_text=text)
    sent.first.wait_for()


def shows(page, text, timeout=WAIT_MS):
    page.locator("#messages .message .text", has_text=text).first.wait_for(timeout=timeout)
    return True


def directMessage(sender, senderName, reader, readerName, text):
    """
    C{sender} opens a direct message to C{readerName} and says C{text}; it
    shows in C{reader}'s conversation with C{senderName}.
    """
    sender.click("#btn-dm-open")
    sender.fill("#dm-user", readerName)
    sender.click("#dm-submit")
    sender.wait_for_selector("#dm-list li.active[data-conv='%s']" % (readerName,))
    say(sender, text)
    reader.locator("#dm-list li[data-conv='%s']" % (senderName,)).wait_for()
    openConversation(reader, "dm-list", senderName)
    return shows(reader, text)


def openConversation(page, listId, name):
    page.locator("#%s li[data-conv='%s'] button" % (listId, name)).click()
    page.wait_for_selector("#%s li.active[data-conv='%s']" % (listId, name))


# -- the run ----------------------------------------------------------------------

def run(results, args, work):
    helpText = serverHelp()
    p1, p2, p3 = freePort(), freePort(), freePort()
    base = "http://127.0.0.1:%d/" % (p2,)
    env = environment()
    serverArgs = ["chatd", "--data-dir", os.path.join(work, "data"),
                  "--binary", "tcp:%d:interface=127.0.0.1" % (p1,),
                  "--web", "tcp:%d:interface=127.0.0.1" % (p2,),
                  "--bcrypt-cost", "4"]
    if "--text" in helpText:
        serverArgs += ["--text", "tcp:%d:interface=127.0.0.1" % (p3,)]
    if "--web" in helpText:
        command = twistdCommand("-n", "--pidfile=", "--logfile=-", *serverArgs)
    else:
        print("note    twistd chatd has no --web option yet: serving makeWebResource "
              "from a stand-in launcher", flush=True)
        launcher = os.path.join(work, "web_stand_in.py")
        with open(launcher, "w") as f:
            f.write(STAND_IN)
        command = [sys.executable, launcher] + serverArgs[1:]
    server = Process(command, os.path.join(work, "server.log"), env)
    processes = [server]
    browser = None
    try:
        up = all(waitForPort(port, server.process, START_SECONDS) for port in (p1, p2))
        if not results.check("server listens (binary and web)", up, "see the end of its log below"):
            print(server.output()[-3000:])
            return
        from playwright.sync_api import sync_playwright
        with sync_playwright() as playwright:
            browser = Browser(playwright, base)
            try:
                conversation(results, args, work, browser, p1, env, processes)
            finally:
                browser.close()
    finally:
        for process in reversed(processes):
            process.stop()
        if results.failed:
            print("--- end of the server's log ---")
            print(server.output()[-2500:])


def conversation(results, args, work, browser, binaryPort, env, processes):
    def snap(page, name):
        """With --keep, a picture of a moment worth looking at, in the work directory."""
        if args.keep:
            page.screenshot(path=os.path.join(work, name + ".png"))

    aliceContext, bobContext = browser.newContext(), browser.newContext()
    alice = browser.page(aliceContext, "alice")
    bob = browser.page(bobContext, "bob")

    def workedExample():
        got = alice.evaluate(WORKED_EXAMPLE_JS)
        expected = {"id": "AAECAwQFBgcICQoLDA0ODw", "nonce": "EBESExQVFhcYGRob",
                    "kc": "TfBFtg3tEmdZTPtaljI9CbPsxSn3ccIn8mn5oVQstFI=", "headerLength": 159,
                    "headerHex": EXPECTED_HEADER.encode().hex(),
                    "encrypted": "SLiTfiDQxgHta/1SDO1T4R66Pe+S",
                    "chunkNonce": "000000000000000000000007",
                    "chunkAad": "chatd-chunk-v1\nAAECAwQFBgcICQoLDA0ODw\n7"}
        wrong = [k for k in expected if got.get(k) != expected[k]]
        return "!differs in %s" % (", ".join(wrong),) if wrong else True
    results.attempt("envelope matches the worked example (WebCrypto in the page)", workedExample)

    def sanitised():
        got = alice.evaluate(SANITISE_JS)
        bad = [n for n in got if "/" in n or "\\" in n or "\u202e" in n or n in ("", ".", "..")]
        return "!%r" % (got,) if bad or got[0] != "passwd" or got[-1] != "report.pdf" else True
    results.attempt("received file names are sanitised", sanitised)
    def rate():
        got = alice.evaluate(RATE_JS)
        rule = ["", "", "1.2 MB/s, 0:35 left", "1.0 MB/s, 1:06:39 left"]
        # About 1 MB/s: the card is drawn a few milliseconds after "2 s ago".
        card = re.fullmatch(r"(1\.0 MB|10[0-2]\d KB)/s, 0:0[12] left", got["card"] or "")
        return True if got["rule"] == rule and card else "!%r" % (got,)
    results.attempt("a running transfer shows its rate and time left", rate)
    def guests():
        with open(VECTORS, encoding="utf-8") as f:
            keys = json.load(f)["keys"]
        page = browser.page(browser.newContext(), "guests")
        got = page.evaluate(GUEST_JS, keys)
        page.context.close()
        expected = {"guestPinned": False, "guestTag": True, "accountPinned": True,
                    "alertsForGuest": [], "bobPinKept": True, "alertsForAccount": ["bob"]}
        return True if got == expected else "!%r" % (got,)
    results.attempt("a guest's key is never pinned, and guests are marked", guests)
    results.attempt("the shared client test vectors: the same outcomes as the terminal client",
                    sharedVectors, browser)
    results.attempt("the shared device vectors: lists, envelope version 2, device login, "
                    "approval and recovery, as the Python reference makes them",
                    browser_devices.sharedVectors, browser, DEVICE_VECTORS)
    results.attempt("a lying server's devices (unsigned, swapped, forged, rolled back, forked) "
                    "are refused in the page", browser_devices.lyingServer, browser)
    results.attempt("history for a new member: only what the signed setting covers is "
                    "re-wrapped, for verified devices; a wrong key fails the commitment",
                    browser_devices.historyShares, browser)
    results.attempt("history shared with a newcomer: a share beyond the signed setting, a direct "
                    "message or another room's is refused loudly; the join dialog sets history",
                    browser_devices.forgedShares, browser)

    recovery = {}
    for page, name in ((alice, "alice"), (bob, "bob")):
        try:
            recovery[name] = signIn(page, name, PASSWORD, True)
        except Exception as e:
            results.check("%s registers in the browser" % (name,), False, str(e))
            return
        results.check("%s registers in the browser, and is shown a recovery code once" % (name,),
                      re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{1,4}){6}", recovery[name] or ""),
                      repr(recovery[name]))

    def nonExtractable():
        got = alice.evaluate(NON_EXTRACTABLE_JS, "alice")
        ok = (got and got["oaep"] is False and got["pss"] is False and not got["exported"]
              and got["oaepAlg"] == "RSA-OAEP" and got["pssAlg"] == "RSA-PSS"
              and got["spkiBytes"] > 300)
        return True if ok else "!%r" % (got,)
    results.attempt("the key is in IndexedDB, non-extractable, as RSA-OAEP and RSA-PSS",
                    nonExtractable)

    results.attempt("alice joins %s" % ROOM, joinRoom, alice, ROOM)
    results.attempt("bob joins %s" % ROOM, joinRoom, bob, ROOM)

    # carol: the project's stdio client, from a script.
    script = os.path.join(work, "carol.txt")
    with open(script, "w", encoding="utf-8") as f:
        f.write("\n".join([
            "/register carol %s" % (PASSWORD,),
            "/join %s" % (ROOM,),
            '/expect "%s" 60' % (ALICE_SAYS,),
            '/expect "%s" 60' % (BOB_SAYS,),
            "/send %s" % (CAROL_SAYS,),
            "/pm alice %s" % (CAROL_DM,),
            '/expect "%s" 180' % (AFTER_TRUST,),
            "/wait 1",
            "/exit",
        ]) + "\n")
    carolEnv = dict(env, CHATD_PASSPHRASE="carol's passphrase for the check")
    carol = Process([sys.executable, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                     "--port", str(binaryPort), "--script", script,
                     "--home", os.path.join(work, "carol-home")],
                    os.path.join(work, "carol.log"), carolEnv)
    processes.append(carol)
    joined = carol.waitFor("joined %s" % (ROOM,), 60)
    if not results.check("carol (stdio client) registers and joins %s" % ROOM, joined,
                         carol.output()[-500:]):
        return
    results.attempt("alice sees carol join", lambda: alice.locator(
        "#messages .system", has_text="carol joined").first.wait_for() or True)

    results.attempt("alice sends in the browser", say, alice, ALICE_SAYS)
    results.attempt("bob sees alice's message", shows, bob, ALICE_SAYS)
    results.check("carol sees alice's message", carol.waitFor(ALICE_SAYS, 30))
    results.attempt("bob sends in the browser", say, bob, BOB_SAYS)
    results.attempt("alice sees bob's message", shows, alice, BOB_SAYS)
    results.check("carol sees bob's message", carol.waitFor(BOB_SAYS, 30))
    results.attempt("alice sees carol's message", shows, alice, CAROL_SAYS, 40000)
    results.attempt("bob sees carol's message", shows, bob, CAROL_SAYS, 40000)

    def carolsDm():
        alice.locator("#dm-list li[data-conv='carol']").wait_for()
        openConversation(alice, "dm-list", "carol")
        return shows(alice, CAROL_DM)
    results.attempt("alice gets carol's direct message (binary door to WebSocket)", carolsDm)

    def aliceDm():
        return directMessage(alice, "alice", bob, "bob", ALICE_DM)
    results.attempt("alice and bob exchange a direct message", aliceDm)

    # alice's second browser: a device approved with the code it shows.
    try:
        aliceTwo = browser_devices.secondDevice(browser, alice, PASSWORD)
        results.check("alice's second browser waits, shows /approve CODE, and is approved "
                      "with the code from her first", True)
    except Exception as e:
        results.check("alice's second browser is approved with the code", False, str(e))
        return
    results.attempt("bob sees 'alice added device' quietly: no key-change block",
                    browser_devices.quietlyAdded, bob, alice, ROOM)

    def bothDevices():
        openConversation(alice, "room-list", ROOM)
        aliceTwo.wait_for_selector("#room-list li[data-conv='%s']" % ROOM)
        openConversation(aliceTwo, "room-list", ROOM)
        say(bob, TO_BOTH)
        shows(alice, TO_BOTH)
        shows(aliceTwo, TO_BOTH)
        say(aliceTwo, FROM_SECOND)
        shows(bob, FROM_SECOND)
        shows(alice, FROM_SECOND)
        mine = alice.locator("#messages .message[data-from='alice'] .text", has_text=FROM_SECOND)
        return mine.count() == 1 or "!not shown as alice's own"
    results.attempt("messages arrive on both of alice's browsers; the second's show as "
                    "alice's on the first", bothDevices)

    def twoReloads():
        aliceTwo.reload(wait_until="load")
        signIn(aliceTwo, "alice", "", False)
        openConversation(aliceTwo, "room-list", ROOM)
        return shows(aliceTwo, FROM_SECOND)
    results.attempt("alice's second browser reloads signed in by its device key",
                    twoReloads)
    aliceTwo.context.close()

    def removeSecond():
        alice.click("#btn-me")
        alice.locator("#device-list button", has_text="Remove browser-").click()
        alice.wait_for_function("() => document.querySelectorAll('#device-list li').length === 1")
        alice.click("#me-dialog [data-close]")
        openConversation(bob, "room-list", ROOM)
        bob.locator("#messages .system:not(.bad)", has_text="alice removed a device").first \
            .wait_for()
        return True
    results.attempt("alice removes her second browser from her devices; bob is told quietly",
                    removeSecond)

    def recovered():
        page = browser.page(browser.newContext(), "alice (recovering)")
        browser_devices.pendingCode(page, "alice", PASSWORD)
        page.click("#pending-panel summary")
        page.fill("#recover-code", recovery["alice"].lower())
        page.click("#btn-recover")
        page.wait_for_selector("#app-screen:not(.hidden)", timeout=60000)
        openConversation(page, "room-list", ROOM)
        say(page, RECOVERED)
        shows(bob, RECOVERED)
        page.context.close()
        if bob.locator("#key-alerts .key-alert[data-user='alice']").count():
            return "!bob got a key-change block for alice"
        return True
    results.attempt("a browser with no other device at hand recovers alice's identity with her "
                    "recovery code: no key change", recovered)

    def waitingDm():
        ginaContext = browser.newContext()
        gina = browser.page(ginaContext, "gina")
        signIn(gina, "gina", PASSWORD, True)
        gina.close()
        bob.click("#btn-dm-open")
        bob.fill("#dm-user", "gina")
        bob.click("#dm-submit")
        bob.wait_for_selector("#dm-list li.active[data-conv='gina']")
        say(bob, WAITING_DM)
        gina = browser.page(ginaContext, "gina (back)")
        signIn(gina, "gina", "", False)
        gina.locator("#dm-list li[data-conv='bob']").wait_for()
        openConversation(gina, "dm-list", "bob")
        shows(gina, WAITING_DM)
        count = gina.locator("#messages .message .text", has_text=WAITING_DM).count()
        ginaContext.close()
        return count == 1 or "!shown %d times" % (count,)
    results.attempt("a direct message to someone with no page open waits, and shows once "
                    "when she signs in", waitingDm)

    phone(results, args, browser, alice, bob)

    # The picture for the README: the room, with members and fingerprints.
    def screenshot():
        openConversation(alice, "room-list", ROOM)
        alice.click("#btn-members")
        alice.locator("#member-list li[data-user='bob'] button", has_text="Verify").click()
        alice.click("#verify-ok")
        alice.locator("#member-list li[data-user='bob'] .tag.verified").wait_for()
        alice.fill("#composer-input", "Sounds good, see you all at 3")
        alice.wait_for_timeout(300)
        os.makedirs(os.path.dirname(args.screenshot), exist_ok=True)
        alice.screenshot(path=args.screenshot)
        alice.fill("#composer-input", "")
        return os.path.getsize(args.screenshot) > 10000
    results.attempt("screenshot saved to %s" % (os.path.relpath(args.screenshot, ROOT),),
                    screenshot)

    # bob signs in again in a new tab, by key alone: the key is in IndexedDB.
    def keyOnlyAndHistory():
        again = browser.page(bobContext, "bob (second tab)")
        signIn(again, "bob", "", False)
        again.wait_for_selector("#room-list li[data-conv='%s']" % ROOM)
        openConversation(again, "room-list", ROOM)
        for text in (ALICE_SAYS, BOB_SAYS, CAROL_SAYS):
            shows(again, text)
        again.close()
        return True
    results.attempt("bob signs in by key only; history shows all three", keyOnlyAndHistory)

    # bob signs in from a browser that has never seen him and has no other
    # device at hand: he resets his identity, a new key, which alice must be
    # warned about and must trust before she can send again.
    newBobContext = browser.newContext()
    newBob = browser.page(newBobContext, "bob (new browser)")

    def resetIdentity():
        browser_devices.pendingCode(newBob, "bob", PASSWORD)
        newBob.click("#pending-panel summary")
        newBob.click("#btn-reset-identity")
        newBob.wait_for_selector("#app-screen:not(.hidden)", timeout=60000)
        newBob.locator("#recovery-dialog[open] #recovery-code").wait_for()
        newBob.click("#recovery-done")
        return True
    if not results.attempt("bob, from a new browser with his password, resets his identity "
                           "(a new key)", resetIdentity):
        return

    def warned():
        openConversation(alice, "room-list", ROOM)
        alice.locator("#key-alerts .key-alert[data-user='bob']").wait_for()
        blocked = alice.locator("#composer-send").is_disabled()
        note = alice.locator("#composer-blocked").is_visible()
        snap(alice, "key-change")
        return True if blocked and note else "!sending was not blocked"
    results.attempt("alice gets a loud key-change warning for bob; sending is blocked", warned)

    def held():
        newBob.wait_for_selector("#room-list li[data-conv='%s']" % ROOM)
        openConversation(newBob, "room-list", ROOM)
        say(newBob, HELD_TEXT)
        alice.locator("#messages .system",
                      has_text="is held until you check bob's new key").first.wait_for()
        if alice.locator("#messages .message .text", has_text=HELD_TEXT).count():
            return "!shown before alice checked the key"
        return True
    results.attempt("what bob's new key signs is held, not shown, until alice checks it", held)

    def sideBySide():
        block = alice.locator("#key-alerts .key-alert[data-user='bob']")
        old = block.locator(".fp-old .fingerprint").inner_text()
        new = block.locator(".fp-new .fingerprint").inner_text()
        oldBox, newBox = (block.locator(s).bounding_box() for s in (".fp-old", ".fp-new"))
        if old.split() == new.split() or len(new.split()) != 16:
            return "!fingerprints %r and %r" % (old, new)
        if abs(oldBox["y"] - newBox["y"]) > 2 or newBox["x"] <= oldBox["x"] + oldBox["width"] - 1:
            return "!not side by side: %r %r" % (oldBox, newBox)
        return True
    results.attempt("the key-change block shows the old and new fingerprints side by side",
                    sideBySide)

    def bobsBlock():
        """alice's block for bob's changed key, and the new fingerprint's last 4."""
        block = alice.locator("#key-alerts .key-alert[data-user='bob']")
        return block, "".join(block.locator(".fp-new .fingerprint").inner_text().split())[-4:]

    def wrongEnd():
        block, end = bobsBlock()
        trust = block.locator("button.trust")
        if not trust.is_disabled():
            return "!one click trusts the key"
        block.locator("input.confirm-fp").fill("%04x" % ((int(end, 16) + 1) % 0x10000,))
        trust.click()
        block.locator(".confirm-status.error").wait_for()
        if not alice.locator("#composer-send").is_disabled():
            return "!a wrong end unblocked sending"
        return True
    results.attempt("trusting bob's new key takes more than a click: a wrong end is refused",
                    wrongEnd)

    def trusted():
        block, end = bobsBlock()
        block.locator("input.confirm-fp").fill(end.upper())
        block.locator("button.trust").click()
        alice.locator("#key-alerts .key-alert").wait_for(state="detached")
        if alice.locator("#composer-send").is_disabled():
            return "!still blocked"
        shows(alice, HELD_TEXT)
        say(alice, AFTER_TRUST)
        return shows(newBob, AFTER_TRUST)
    results.attempt("alice types the end of bob's new fingerprint: his held message shows, "
                    "and his new browser reads her", trusted)
    results.check("carol sees the message sent after the trust", carol.waitFor(AFTER_TRUST, 30))
    results.check("carol's script ends cleanly", carol.wait(30) == 0, carol.output()[-800:])

    def fileTransfer():
        payload = os.urandom(300 * 1024) + b"end of the file"
        alice.set_input_files("#file-input", files=[{
            "name": "../holiday photos.bin", "mimeType": "application/octet-stream",
            "buffer": payload}])
        card = alice.locator(".file-card").last
        alice.wait_for_function(
            "() => { const c = [...document.querySelectorAll('.file-card')].pop();"
            " return c && !['offering'].includes(c.dataset.state); }")
        stateNow = card.get_attribute("data-state")
        if stateNow == "unsupported":
            disabled = alice.locator("#btn-file").is_disabled()
            return True if disabled else "!the send button stayed enabled"
        offer = newBob.locator(".file-card[data-state='offered']").last
        offer.wait_for()
        if "holiday photos.bin" not in offer.inner_text():
            return "!offer shows %r" % (offer.inner_text(),)
        offer.locator("button.file-accept").click()
        link = newBob.locator(".file-card[data-state='done'] a.download").last
        link.wait_for(timeout=60000)
        with newBob.expect_download(timeout=WAIT_MS) as download:
            link.click()
        if download.value.suggested_filename != "holiday photos.bin":
            return "!saved as %r" % (download.value.suggested_filename,)
        with open(download.value.path(), "rb") as f:
            got = f.read()
        if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
            return "!the received file differs"
        alice.locator(".file-card[data-state='done']").last.wait_for(timeout=60000)
        snap(alice, "file-sent")
        snap(newBob, "file-received")
        return True
    results.attempt("file send and receive (or a clear 'not supported' where the server has none)",
                    fileTransfer)

    def moderated():
        """
        alice made the room, so she owns it: she sets its topic and kicks bob
        from the composer; bob sees the topic, then is told and loses the room.
        """
        alice.fill("#composer-input", "/topic Be kind here")
        alice.press("#composer-input", "Enter")
        newBob.locator("#messages .system", has_text="alice set the topic: Be kind here") \
            .first.wait_for(timeout=WAIT_MS)
        if "Be kind here" not in alice.locator("#chat-sub").inner_text():
            return "!the topic is not under the room's name"
        alice.fill("#composer-input", "/kick bob calm down")
        alice.press("#composer-input", "Enter")
        newBob.locator(".toast", has_text="You were kicked out of %s by alice: calm down"
                       % (ROOM,)).first.wait_for(timeout=WAIT_MS)
        newBob.wait_for_selector("#room-list li[data-conv='%s']" % (ROOM,), state="detached")
        if alice.locator("#messages .message .text", has_text="/kick").count():
            return "!the command was sent as a message"
        return True
    results.attempt("moderation in the browser: alice sets the topic and kicks bob", moderated)

    liar = LyingSocket("dave", otherKeyPem())
    daveContext = browser.newContext()
    daveContext.route_web_socket("**/ws", liar.route)
    dave = browser.page(daveContext, "dave (lied to)")
    results.attempt("a server that lies about dave's own key gets a loud warning and nothing "
                    "sent", lyingAboutOwnKey, liar, dave)
    results.attempt("a direct message shows the time its sender signed, not the server's",
                    signedTime, liar, alice, dave)
    results.attempt("delivered again to dave's page as it was (alice's retry), it is dropped "
                    "without a word; under its id with another signature, with a note",
                    retryInPage, liar, dave)
    results.attempt("replayed after dave's page is loaded again, it is dropped",
                    replayAfterReload, liar, dave)
    results.attempt("a message the server could not store (unavailable) is sent again as it "
                    "was sealed, by the page and on retry; shown once",
                    browser_resend.resentAsSealed, liar, dave, alice)
    results.attempt("a resend refused as a replayed id was stored after all: sent, shown once",
                    browser_resend.storedAfterAll, liar, dave, alice)
    results.attempt("a message whose answer never came (the connection lost) is sent again "
                    "as it was sealed on retry, once reconnected: sent, shown once",
                    browser_resend.noAnswer, liar, dave, alice)

    inviteOnly(results, work, browser, env, processes)

    results.check("no request left the page's own server", not browser.foreign,
                  ", ".join(browser.foreign[:5]))
    errors = [e for e in browser.errors if "WebSocket" not in e]
    results.check("no uncaught errors in the pages", not errors, "; ".join(errors[:3]))


def sharedVectors(browser):
    """
    Run every case of chatd/test/vectors/clients.json through the page's
    code, in a page of its own, and compare each step's outcomes.
    """
    with open(VECTORS, encoding="utf-8") as f:
        vectors = json.load(f)
    vectors["cases"].append(keyBack(vectors))
    page = browser.page(browser.newContext(), "vectors")
    got = {case["name"]: case["got"] for case in page.evaluate(VECTORS_JS, vectors)}
    page.context.close()
    wrong = []
    for case in vectors["cases"]:
        expected = [[outcomeOf(o) for o in step["expect"]] for step in case["steps"]]
        outcomes = [[outcomeOf(o) for o in step] for step in got[case["name"]]]
        if outcomes != expected:
            wrong.append("%s: %r, not %r" % (case["name"], outcomes, expected))
    if wrong:
        return "!%d of %d cases differ: %s" % (len(wrong), len(vectors["cases"]), "; ".join(wrong))
    return len(got) == len(vectors["cases"]) > 0


def keyBack(vectors):
    """
    One more case, the browser's own: bob's key changes, so his message
    signed with the pinned key waits; the server then gives bob's pinned key
    again, and the message is checked with it and shown.
    """
    [case] = [c for c in vectors["cases"] if c["name"] == "key-change-held-checked"]
    changed, heldOld = case["steps"][:2]
    envelope = json.loads(heldOld["envelope"])
    shown = {"outcome": "show", "sender": "bob", "text": "signed with the old key",
             "ts": envelope["ts"]}
    return {"name": "browser: key-back-releases-held", "pins": case["pins"], "horizon": 0,
            "steps": [changed, heldOld,
                      {"op": "keyChanged", "user": "bob", "key": "bob", "expect": [shown]}]}


def outcomeOf(o):
    """
    One outcome, as comparable: what was shown (sender, text, signed time),
    held, or dropped and why.
    """
    if o["outcome"] == "show":
        return ("show", o["sender"], o["text"], o["ts"])
    return (o["outcome"], o.get("reason"))


PHONE = {"width": 390, "height": 844}
FRANK_SAYS = "frank on his phone, reading along"
ALICE_TO_ROOM = "welcome frank, this room is end-to-end encrypted"
BOB_TO_FRANK = "hi frank, the drawers on a phone work nicely"
ALICE_TO_FRANK = "frank, did you see this on your phone"
ALICE_WHILE_HIDDEN = "frank, this one comes while your tab is hidden"

# Desktop notifications, observed: a Notification that records what it is
# asked to show, and a document.hidden the check can set.
FAKE_NOTIFICATIONS_JS = """
window.__notes = [];
window.__hidden = false;
window.Notification = class {
  static permission = "default";
  static requestPermission() { this.permission = "granted"; return Promise.resolve("granted"); }
  constructor(title, options) { window.__notes.push({ title, body: options.body }); }
  close() {}
};
Object.defineProperty(document, "hidden", { configurable: true, get: () => window.__hidden });
"""

LAYOUT_JS = """
() => {
  const root = document.documentElement;
  const controls = "#app-screen button, #app-screen input, #app-screen textarea";
  const small = [...document.querySelectorAll(controls)]
    .filter((n) => n.checkVisibility({ visibilityProperty: true }) && n.getClientRects().length)
    .map((n) => [n.id || n.className || n.tagName, n.getBoundingClientRect()])
    .filter(([, r]) => r.height < 44 || r.width < 44)
    .map(([name, r]) => `${name} ${Math.round(r.width)}x${Math.round(r.height)}`);
  return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
           composer: document.querySelector("#composer").getBoundingClientRect().width,
           input: document.querySelector("#composer-input").getBoundingClientRect().width,
           messages: document.querySelector("#messages").getBoundingClientRect().width, small };
}
"""

BACKGROUND_JS = """
() => getComputedStyle(document.querySelector("#chat")).backgroundColor
  .match(/\\d+/g).slice(0, 3).map(Number)
"""


def phone(results, args, browser, alice, bob):
    """
    frank, on a 390x844 phone: the conversation takes the width, nothing
    scrolls sideways (at 360 px either), every control is at least 44 px, the
    room list and members are drawers, unread counts appear and clear, a
    hidden tab notifies (without the text), and dark mode follows the system.
    """
    context = browser.newContext(PHONE)
    context.add_init_script(FAKE_NOTIFICATIONS_JS)
    frank = browser.page(context, "frank (phone)")
    if not results.attempt("frank registers on a phone", signIn, frank, "frank", PASSWORD, True):
        return

    def joins():
        frank.click("#btn-rooms")
        frank.click("#btn-join-open")
        frank.locator("#sidebar").wait_for(state="hidden")
        frank.fill("#join-room", ROOM)
        frank.click("#join-submit")
        frank.wait_for_selector("#join-dialog", state="hidden")
        frank.wait_for_selector("#room-list li.active[data-conv='%s']" % ROOM, state="attached")
        openConversation(alice, "room-list", ROOM)
        alice.locator("#messages .system", has_text="frank joined").first.wait_for()
        say(alice, ALICE_TO_ROOM)
        return shows(frank, ALICE_TO_ROOM)
    results.attempt("on a phone, frank joins %s from the room drawer" % ROOM, joins)

    def layout(width):
        frank.set_viewport_size({"width": width, "height": PHONE["height"]})
        got = frank.evaluate(LAYOUT_JS)
        frank.set_viewport_size(PHONE)
        if got["scrollWidth"] > got["clientWidth"]:
            return "!scrolls sideways: %r" % (got,)
        if got["small"]:
            return "!under 44 px: %s" % (", ".join(got["small"][:6]),)
        if width == PHONE["width"] and (got["composer"] < 300 or got["messages"] < width - 1):
            return "!composer %(composer)s px, messages %(messages)s px" % got
        return True
    results.attempt("390 px wide: composer and messages take the width, no sideways scroll, "
                    "44 px controls", layout, 390)
    results.attempt("360 px wide: nothing overflows", layout, 360)

    def drawers():
        if frank.locator("#sidebar").is_visible() or frank.locator("#members-panel").is_visible():
            return "!a drawer is open at first"
        frank.click("#btn-rooms")
        frank.locator("#sidebar").wait_for(state="visible")
        frank.mouse.click(PHONE["width"] - 10, PHONE["height"] // 2)  # the dimmed conversation
        frank.locator("#sidebar").wait_for(state="hidden")
        frank.click("#btn-members")
        frank.locator("#members-panel li[data-user='alice']").wait_for()
        frank.mouse.click(10, PHONE["height"] // 2)
        frank.locator("#members-panel").wait_for(state="hidden")
        return True
    results.attempt("the room list and members open and close as drawers", drawers)

    def unread():
        alice.click("#btn-dm-open")
        alice.fill("#dm-user", "frank")
        alice.click("#dm-submit")
        alice.wait_for_selector("#dm-list li.active[data-conv='frank']")
        say(alice, ALICE_TO_FRANK)
        frank.locator("#rooms-unread", has_text="1").wait_for()
        frank.click("#btn-rooms")
        frank.locator("#sidebar").wait_for(state="visible")
        badge = frank.locator("#dm-list li[data-conv='alice'] .badge")
        counted = badge.text_content()
        if counted != "1":
            return "!the DM's badge says %r" % (counted,)
        frank.locator("#dm-list li[data-conv='alice'] button").click()
        frank.locator("#sidebar").wait_for(state="hidden")
        shows(frank, ALICE_TO_FRANK)
        if badge.count() or frank.locator("#rooms-unread").text_content():
            return "!the count stayed after reading"
        return "(1)" not in frank.title() or "!the title still counts it"
    results.attempt("unread counts per conversation appear, and clear once read", unread)

    def notified():
        frank.click("#btn-rooms")
        frank.click("#btn-notify")
        frank.locator("#btn-notify").wait_for(state="hidden")
        frank.mouse.click(PHONE["width"] - 10, PHONE["height"] // 2)
        frank.evaluate("() => { window.__hidden = true; }")
        say(alice, ALICE_WHILE_HIDDEN)
        frank.wait_for_function("() => window.__notes.length > 0")
        notes = frank.evaluate("() => window.__notes")
        frank.evaluate("() => { window.__hidden = false; }")
        if notes != [{"title": "alice", "body": "sent a message"}]:
            return "!%r" % (notes,)
        return True
    results.attempt("asked on a click, a hidden tab notifies of a message (not its text)",
                    notified)

    def dark():
        frank.click("#btn-rooms")
        frank.locator("#room-list li[data-conv='%s'] button" % (ROOM,)).click()
        frank.locator("#sidebar").wait_for(state="hidden")
        openConversation(bob, "room-list", ROOM)
        say(bob, BOB_TO_FRANK)
        shows(frank, BOB_TO_FRANK)
        say(frank, FRANK_SAYS)
        light = frank.evaluate(BACKGROUND_JS)
        if args.shots:
            frank.screenshot(path=os.path.join(args.shots, "phone-light.png"))
        frank.emulate_media(color_scheme="dark")
        darkened = frank.evaluate(BACKGROUND_JS)
        if args.shots:
            frank.screenshot(path=os.path.join(args.shots, "phone-dark.png"))
        frank.emulate_media(color_scheme="light")
        if not (sum(light) > 600 and sum(darkened) < 150):
            return "!background %r in light, %r in dark" % (light, darkened)
        return True
    results.attempt("dark mode follows prefers-color-scheme", dark)
    frank.close()


def inviteOnly(results, work, browser, env, processes):
    """
    A second server, with --registration invite: the page's register form
    without an invite is refused with the server's reason; with a token from
    the admin command, erin gets her account.
    """
    data, port = os.path.join(work, "invite-data"), freePort()
    server = Process(twistdCommand("-n", "--pidfile=", "--logfile=-", "chatd", "--data-dir", data,
                                   "--binary", "none", "--text", "none",
                                   "--web", "tcp:%d:interface=127.0.0.1" % (port,),
                                   "--registration", "invite", "--bcrypt-cost", "4"),
                     os.path.join(work, "invite-server.log"), env)
    processes.append(server)
    if not results.check("an invite-only server listens", waitForPort(port, server.process,
                                                                       START_SECONDS),
                         server.output()[-1000:]):
        return
    made = subprocess.run([sys.executable, "-m", "chatd.admin", "--data-dir", data, "invite"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    token = made.stdout.strip()
    if not results.check("the admin command makes an invite", made.returncode == 0 and token,
                         made.stderr[-500:]):
        return
    page = browser.page(browser.newContext(), "erin (invite-only server)",
                        "http://127.0.0.1:%d/" % (port,))

    def refused():
        page.fill("#login-user", "erin")
        page.fill("#login-pass", PASSWORD)
        page.click("#btn-register")
        page.locator("#login-status.error", has_text="invite").wait_for(timeout=60000)
        return page.locator("#login-screen").is_visible() or "!signed in without an invite"
    results.attempt("registering without an invite is refused, and says why", refused)

    def invited():
        page.fill("#login-invite", token)
        page.click("#btn-register")
        page.wait_for_selector("#app-screen:not(.hidden)", timeout=60000)
        return page.locator("#me-name").inner_text() == "erin"
    results.attempt("with the admin's invite in the form, erin registers", invited)


class LyingSocket:
    """
    Stands between a page and the server's WebSocket (Playwright's
    C{route_web_socket}): passes everything on, lies about C{user}'s key in
    JOIN answers while C{lying} is set, gives every message event another
    server time while C{skewTimes} is set, keeps the page's requests and the
    server's events, and can replay an event to the page, or refuse the
    page's envelopes as a server that could not store them.

    @ivar refuse: how to answer the page's next envelopes (chat_message, dm),
        one each: C{"unavailable"} (not passed on; refused as not stored),
        C{"lost"} (passed on, and the server's answer replaced by that
        refusal) or C{"dropped"} (passed on, and the connection closed in
        place of the server's answer).
    @ivar sent: the page's requests, as dicts.
    @ivar received: the events the server sent the page, as dicts.
    @ivar lies: how many keys were replaced.
    """

    def __init__(self, user, claimedPem):
        self.user = user
        self.claimedPem = claimedPem
        self.lying = True
        self.skewTimes = False
        self.sent = []
        self.received = []
        self.lies = 0
        self.ws = None
        self.refuse = []
        self._unstored = set()
        self._dropped = set()

    def inject(self, event):
        """
        Send C{event} to the page, as if the server did.
        """
        assert self.ws is not None, "the page has not connected yet"
        self.ws.send(json.dumps(event))

    def route(self, ws):
        self.ws = ws
        server = ws.connect_to_server()

        def toServer(message):
            if isinstance(message, str):
                request = json.loads(message)
                self.sent.append(request)
                if self.refuse and request.get("type") in ("chat_message", "dm"):
                    how = self.refuse.pop(0)
                    if how == "unavailable":
                        ws.send(self.notStored(request["id"]))
                        return
                    (self._dropped if how == "dropped" else self._unstored).add(request["id"])
            server.send(message)

        def toPage(message):
            if isinstance(message, str):
                answered = json.loads(message).get("id")
                if answered in self._dropped:
                    self._dropped.discard(answered)
                    server.close()
                    ws.close()
                    return
                if answered in self._unstored:
                    self._unstored.discard(answered)
                    message = self.notStored(answered)
                message = self.rewrite(message)
            ws.send(message)

        ws.on_message(toServer)
        server.on_message(toPage)

    @staticmethod
    def notStored(requestId):
        return json.dumps({"type": "error", "id": requestId, "code": "unavailable",
                           "message": "the message could not be stored; try again"})

    def rewrite(self, message):
        event = json.loads(message)
        if "id" not in event:
            self.received.append(event)
        if self.skewTimes and event.get("type") in ("dm", "chat_message"):
            event["timestamp"] = SKEWED_TIME
            return json.dumps(event)
        if not self.lying or event.get("type") != "joined":
            return message
        for member in event.get("members", []):
            if member.get("userId") == self.user:
                member["publicKey"] = self.claimedPem
                self.lies += 1
        return json.dumps(event)

    def envelopesSent(self):
        return [m for m in self.sent if m.get("type") in ("chat_message", "dm", "file_offer")]


def otherKeyPem():
    """
    A public key nobody in the check holds the private half of.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def lyingAboutOwnKey(liar, dave):
    """
    dave's page talks through a lying WebSocket: its JOIN answer lists dave
    with another key. The page warns, blocks sending, and sends no envelope;
    once dave publishes this browser's key again, he can send.
    """
    signIn(dave, "dave", PASSWORD, True)
    joinRoom(dave, ROOM)
    alert = dave.locator("#self-key-alert:not(.hidden)")
    alert.wait_for()
    text = alert.inner_text()
    if "another key for you" not in text or "someone with your password" not in text:
        return "!the warning says %r" % (text,)
    if not dave.locator("#composer-send").is_disabled():
        return "!sending is not blocked"
    if "another key for you" not in dave.locator("#composer-blocked").inner_text():
        return "!no note under the composer"
    # Even a message forced past the disabled composer is not sent.
    dave.evaluate("""() => {
      const input = document.querySelector('#composer-input');
      input.disabled = false;
      input.value = 'forced past the block';
      document.querySelector('#composer').requestSubmit();
    }""")
    dave.locator("#messages .message.failed", has_text="the server changed your key").wait_for()
    if liar.lies < 1 or liar.envelopesSent():
        return "!lies %d, envelopes sent %r" % (liar.lies, liar.envelopesSent())
    liar.lying = False
    alert.locator("button.publish-own-key").click()
    dave.locator("#self-key-alert").wait_for(state="hidden")
    say(dave, "dave's own key again")
    # Sent now (twice when the server first names members who are offline:
    # a stale_recipients answer, and the page seals again).
    return len(liar.envelopesSent()) in (1, 2) or "!%r" % (liar.envelopesSent(),)


def alicesDirectMessages(liar):
    return [e for e in liar.received if e.get("type") == "dm" and e.get("userId") == "alice"]


def signedTime(liar, alice, dave):
    """
    alice sends dave a direct message, which the server delivers with a
    server time years off: dave's page shows the time alice signed.
    """
    liar.skewTimes = True
    directMessage(alice, "alice", dave, "dave", REPLAYED_DM)
    events = alicesDirectMessages(liar)
    if len(events) != 1:
        return "!alice's direct message came %d times" % (len(events),)
    envelope = events[0]["envelope"]
    signed = datetime.datetime.fromtimestamp(envelope["ts"] / 1000, datetime.timezone.utc)
    expected = signed.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (envelope["ts"] % 1000,)
    shown = dave.locator("#messages .message[data-id='%s'] time" % (envelope["id"],))
    if shown.get_attribute("datetime") != expected:
        return "!shows %s; signed %s" % (shown.get_attribute("datetime"), expected)
    return True


def retryInPage(liar, dave):
    """
    The server delivers alice's direct message to dave's page again, the
    same envelope (as when alice sends again a message whose commit failed):
    nothing is said. Then it delivers the same id with another signature: a
    replay, dropped with a note. The message shows once.
    """
    [event] = alicesDirectMessages(liar)
    liar.inject(event)
    other = json.loads(json.dumps(event))
    signature = other["envelope"]["signature"]
    other["envelope"]["signature"] = ("B" if signature[0] == "A" else "A") + signature[1:]
    liar.inject(other)
    # The page takes what comes in order: once the second is said, the first
    # was dealt with.
    notes = dave.locator("#messages .system", has_text="repeats a message already received")
    notes.first.wait_for()
    if notes.count() != 1:
        return "!%d notes for one replay" % (notes.count(),)
    shown = dave.locator("#messages .message .text", has_text=REPLAYED_DM).count()
    return shown == 1 or "!the message is shown %d times" % (shown,)


def replayAfterReload(liar, dave):
    """
    Once dave's page is loaded again and he signs in by key, the server
    replays alice's direct message: it is dropped, with a note; the message
    shows once (from the conversation's history), not twice.
    """
    [event] = alicesDirectMessages(liar)
    dave.reload(wait_until="load")
    caughtUp = len([e for e in liar.received if e.get("type") == "caught_up"])
    signIn(dave, "dave", "", False)
    # Until the server has caught the page up, a repeat is dropped quietly.
    deadline = time.monotonic() + WAIT_MS / 1000
    while len([e for e in liar.received if e.get("type") == "caught_up"]) <= caughtUp:
        if time.monotonic() > deadline:
            return "!no caught_up after signing in"
        dave.wait_for_timeout(100)
    liar.inject(event)
    dave.locator("#dm-list li[data-conv='alice']").wait_for()
    openConversation(dave, "dm-list", "alice")
    dave.locator("#messages .system", has_text="repeats a message already received").wait_for()
    shown = dave.locator("#messages .message .text", has_text=REPLAYED_DM).count()
    return shown <= 1 or "!the replayed message is shown %d times" % (shown,)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--screenshot", default=os.path.join(ROOT, "docs", "screenshot.png"))
    parser.add_argument("--shots", metavar="DIR",
                        help="also save the phone layout, light and dark, in DIR")
    args = parser.parse_args()
    results = Results()
    work = tempfile.mkdtemp(prefix="chatd-browser-")
    try:
        if not os.path.exists(CHROMIUM):
            results.check("Chromium at %s" % (CHROMIUM,), False,
                          "install Debian's chromium (apt-get install -y chromium)")
        else:
            try:
                import playwright.sync_api  # noqa: F401
            except ImportError:
                results.check("Playwright", False, "pip install playwright")
            else:
                run(results, args, work)
    except Exception as e:
        traceback.print_exc()
        results.check("the check ran to its end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        if args.keep:
            print("work directory kept: %s" % (work,))
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("browser check: %d passed, %d failed" % (results.passed, results.failed))
    return 0 if results.failed == 0 and results.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
