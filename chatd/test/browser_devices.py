"""
The browser check's devices part (protocol version 3), in a module of its own
to keep browser_check.py from growing: the shared device vectors
(chatd/test/vectors/devices.json) through the page's code, a lying server
stubbed in the page (an unsigned device, a swapped key, a forged approval, a
rollback, a fork), history shares in the page, and a second browser approved
with the code the new one shows.

Run by browser_check.py; every function here takes what it needs and returns
what L{browser_check.Results.attempt} expects (True, or "!why").
"""

import json

WAIT_MS = 20000

# The shared device vectors (chatd/test/vectors/devices.json, which the
# Python reference is held to by test_device_vectors) through the page's code.
DEVICE_VECTORS_JS = """
async (v) => {
  const c = await import("/crypto.js");
  const d = await import("/devices.js");
  const u = c.unb64;
  const spki = (label) => u(v.keys[label].spki);
  const keys = (label) => c.importPrivate(u(v.keys[label].pkcs8));
  const out = { lists: [], chain: [], readers: {}, badReplies: {} };
  let held = null;
  for (const l of v.lists) {
    const devices = l.devices.map((x) => ({ id: x.id, spki: spki(x.key) }));
    const text = await d.listText(l.user, l.version, l.prev, devices);
    const given = { text: u(l.text), signature: u(l.signature), devices };
    const checked = await d.checkList(l.user, spki("alice"), given);
    out.lists.push(c.equalBytes(text, u(l.text)) && checked.hash === l.head.h
                   && checked.version === l.head.v && checked.devices.length === devices.length);
    out.chain.push(d.chainStep(held, checked));
    held = d.advance(held, checked);
  }
  out.removedLaptop = held.removed.has(await d.keyHash(spki("laptop")));
  const env = JSON.parse(v.envelope.json);
  c.checkEnvelope(env);
  out.header = c.b64(c.header(c.MESSAGE, env)) === v.envelope.header;
  out.signature = await c.verifySignature(env, spki(v.envelope.signer));
  for (const [entry, label] of Object.entries(v.envelope.readers)) {
    const plain = await c.decrypt(env, entry, (await keys(label)).oaep);
    out.readers[entry] = new TextDecoder().decode(plain) === v.envelope.plaintext;
  }
  const a = v.auth;
  out.auth = c.b64(c.deviceAuthMessage(u(a.challenge), a.user, a.device)) === a.message;
  const p = v.approval;
  const deviceKey = spki(p.key);
  out.tag = c.equalBytes(await d.approvalTag(p.secret, p.user, deviceKey), u(p.tag));
  const accept = async (reply) => {
    const opened = await d.openReply(p.secret, u(reply), p.user, p.device, deviceKey);
    const checked = await d.checkList(p.user, opened.ik, opened.list);
    if (!checked.devices.some((x) => x.id === p.device && c.equalBytes(x.spki, deviceKey))) {
      throw new Error("not listed");
    }
    return opened;
  };
  const good = await accept(p.reply);
  out.reply = c.equalBytes(good.ik, spki(p.identityKey))
    && c.equalBytes(good.list.text, u(v.lists[p.list].text))
    && JSON.stringify(good.pins.map((x) => [x.user, c.b64(x.spki)]))
       === JSON.stringify(Object.entries(p.pins).map(([n, l]) => [n, v.keys[l].spki]));
  for (const bad of p.badReplies) {
    try { await accept(bad.reply); out.badReplies[bad.why] = "accepted"; }
    catch (e) { out.badReplies[bad.why] = "refused"; }
  }
  const r = v.recovery;
  out.recovery = c.b64(await d.openRecovery(r.code, r.user, u(r.blob))) === v.keys[r.key].pkcs8;
  try { await d.openRecovery(r.wrongCode, r.user, u(r.blob)); out.wrongCode = "opened"; }
  catch (e) { out.wrongCode = "refused"; }
  return out;
}
"""


def sharedVectors(browser, path):
    """
    The page builds and checks the shared device vectors' bytes as the Python
    reference does: lists (and their chain), the version 2 envelope and its
    header, a device login's bytes, the approval tag and reply (forged ones
    refused) and the recovery blob (a wrong code refused).
    """
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)
    page = browser.page(browser.newContext(), "device vectors")
    try:
        got = page.evaluate(DEVICE_VECTORS_JS, vectors)
    finally:
        page.context.close()
    expected = {
        "lists": [True] * len(vectors["lists"]),
        "chain": ["first"] + ["next"] * (len(vectors["lists"]) - 1),
        "removedLaptop": True, "header": True, "signature": True,
        "readers": {entry: True for entry in vectors["envelope"]["readers"]},
        "auth": True, "tag": True, "reply": True,
        "badReplies": {bad["why"]: "refused" for bad in vectors["approval"]["badReplies"]},
        "recovery": True, "wrongCode": "refused",
    }
    wrong = {k: got.get(k) for k in expected if got.get(k) != expected[k]}
    return "!%r" % (wrong,) if wrong else True


# A lying server, stubbed in the page: what the page's own code makes of the
# device lists, approvals and envelopes a server could forge. bob's identity
# key and devices are made here; nothing goes over the network.
LIAR_JS = """
async () => {
  const c = await import("/crypto.js");
  const d = await import("/devices.js");
  const t = await import("/devicetrust.js");
  const { state } = await import("/state.js");
  const { addRoom } = await import("/conversations.js");
  const { observeKey } = await import("/trust.js");
  const me = await c.generateIdentity();
  const bobIk = await c.generateIdentity();
  const bobLaptop = await c.generateIdentity();
  const ghost = await c.generateIdentity();
  Object.assign(state, { me: "alice", identity: me, ikSpki: me.spki, device: "browser-TEST" });
  const room = addRoom("liars");
  const list = async (version, prev, devices, signer = bobIk) => {
    const text = await d.listText("bob", version, prev, devices);
    return { text: c.b64(text), signature: c.b64(await d.signList(signer.pss, text)),
             devices: devices.map((x) => ({ id: x.id, publicKey: c.derToPem(x.spki) })) };
  };
  await observeKey("bob", bobIk.spki);
  room.members.set("bob", { name: "bob", spki: bobIk.spki });
  const v1 = await list(1, "", [{ id: "desk", spki: bobIk.spki }]);
  const out = {};
  // The server lists a ghost device beside bob's signed one.
  const ghostDevice = { id: "ghost", publicKey: c.derToPem(ghost.spki) };
  const ghostly = { ...v1, devices: [...v1.devices, ghostDevice] };
  await t.observeList("bob", ghostly);
  out.readers = t.readersOf("bob", bobIk.spki).map(([entry]) => entry);
  out.ghostWarned = room.items.some((i) => i.bad && /did not sign/.test(i.text));
  // bob adds a device: a quiet notice, no alarm.
  const v1hash = await d.listHash(c.unb64(v1.text));
  const desk = { id: "desk", spki: bobIk.spki };
  const v2 = await list(2, v1hash, [desk, { id: "laptop", spki: bobLaptop.spki }]);
  await t.observeList("bob", v2);
  out.added = room.items.some((i) => !i.bad && i.text === "bob added device laptop");
  out.alerts = state.alerts.size;
  out.readers2 = t.readersOf("bob", bobIk.spki).map(([entry]) => entry).sort();
  // A list signed by another key, an older list, a fork of version 2.
  await t.observeList("bob", await list(3, await d.listHash(c.unb64(v2.text)),
    [desk, { id: "evil", spki: ghost.spki }], ghost));
  await t.observeList("bob", v1);
  await t.observeList("bob", await list(2, v1hash, [desk, { id: "evil", spki: ghost.spki }]));
  out.readers3 = t.readersOf("bob", bobIk.spki).map(([entry]) => entry).sort();
  out.refusals = room.items.filter((i) => i.bad).map((i) => i.text);
  // A key swapped behind an approval fails its tag; a reply the server made
  // fails its MAC.
  const code = d.newCode();
  const tag = await d.approvalTag(code, "alice", bobLaptop.spki);
  out.swappedTag = await d.tagMatches(code, "alice", ghost.spki, tag);
  const forged = await d.sealReply(d.newCode(), { user: "alice", device: "x",
    deviceKey: ghost.spki, ik: ghost.spki, pins: [],
    list: { text: c.unb64(v1.text), signature: c.unb64(v1.signature), devices: [] } });
  try { await d.openReply(code, forged, "alice", "x", ghost.spki); out.forgedReply = "accepted"; }
  catch (e) { out.forgedReply = "refused"; }
  // A message signed by a device no verified list names is not shown.
  const env = await c.seal({ from: "bob", signingKey: ghost.pss, to: ["room", "liars"],
    recipients: new Map([["alice/browser-TEST", me.spki]]), plaintext: c.utf8("from the ghost"),
    device: { dev: "ghost", head: { v: 2, h: await d.listHash(c.unb64(v2.text)) }, hist: 0 } });
  const bobEntry = { userId: "bob", publicKey: c.derToPem(bobIk.spki), devices: ghostly };
  state.conn = { request: async () => ({ members: [bobEntry] }) };
  const { queueIncoming } = await import("/messaging.js");
  const outcome = await queueIncoming({ conv: room, sender: "bob", envelope: env });
  out.ghostMessage = outcome?.outcome;
  return out;
}
"""


def lyingServer(browser):
    """
    The lying server stubbed in a page: an unsigned device gets no key and a
    warning; an added device signed by bob's identity is a quiet notice and
    no alarm; a list signed by another key, an older one and a fork are
    refused loudly; a swapped key fails the approval tag; a reply the server
    made is refused; a message from an unlisted device is dropped.
    """
    page = browser.page(browser.newContext(), "lying device server")
    try:
        got = page.evaluate(LIAR_JS)
    finally:
        page.context.close()
    expected = {
        "readers": ["bob/desk"], "ghostWarned": True, "added": True, "alerts": 0,
        "readers2": ["bob/desk", "bob/laptop"], "readers3": ["bob/desk", "bob/laptop"],
        "swappedTag": False, "forgedReply": "refused", "ghostMessage": "drop",
    }
    wrong = {k: got.get(k) for k in expected if got.get(k) != expected[k]}
    refusals = got.get("refusals", [])
    for what in ("not signed by bob", "a rollback", "a fork"):
        if not any(what in r for r in refusals):
            wrong[what] = refusals
    return "!%r" % (wrong,) if wrong else True


# -- against the real server ----------------------------------------------------

def pendingCode(page, user, password):
    """
    Sign C{page} in as C{user} with the password from a browser that has no
    key for C{user}: it waits for approval; returns the code it shows.
    """
    page.fill("#login-user", user)
    page.fill("#login-pass", password)
    page.click("#btn-login")
    page.locator("#pending-panel:not(.hidden)").wait_for(timeout=60000)
    line = page.locator("#pending-code").inner_text().strip()
    if not line.startswith("/approve "):
        raise AssertionError("the pending panel shows %r" % (line,))
    return line.split()[1]


def approveWith(approver, code):
    """
    C{approver} (a browser holding the identity key) approves with C{code}.
    """
    approver.click("#btn-approve-open")
    approver.fill("#approve-code", code)
    approver.click("#approve-submit")
    approver.locator("#approve-status", has_text="Approved").wait_for(timeout=WAIT_MS)
    approver.click("#approve-dialog [data-close]")


def secondDevice(browser, alice, password):
    """
    alice signs in from a second browser with her password: it waits and
    shows C{/approve CODE}; her first browser's "Approve a device" takes the
    code, and the second browser goes on signed in. Returns its page.
    """
    two = browser.page(browser.newContext(), "alice (second browser)")
    code = pendingCode(two, "alice", password)
    if two.locator("#app-screen:not(.hidden)").count():
        raise AssertionError("signed in before it was approved")
    approveWith(alice, code)
    two.wait_for_selector("#app-screen:not(.hidden)", timeout=60000)
    return two


def quietlyAdded(bob, alice, room):
    """
    bob's page tells of alice's new device in a quiet line, with no
    key-change block for alice and sending not blocked.
    """
    bob.locator("#room-list li[data-conv='%s'] button" % (room,)).click()
    bob.locator("#messages .system:not(.bad)", has_text="alice added device browser-").first \
        .wait_for(timeout=WAIT_MS)
    if bob.locator("#key-alerts .key-alert[data-user='alice']").count():
        return "!a key-change block for alice"
    if bob.locator("#composer-send").is_disabled():
        return "!sending is blocked"
    return True


# The page's modules the in-page history checks use.
_MODULES = """  const c = await import("/crypto.js");
  const d = await import("/devices.js");
  const t = await import("/devicetrust.js");
  const { state } = await import("/state.js");
  const { addRoom } = await import("/conversations.js");
  const { observeKey } = await import("/trust.js");
"""


# History for new members, in the page: what alice's page re-wraps for nina's
# devices (only messages of that room whose signed history setting covers
# them, for nina's verified devices), and what nina's device makes of a share:
# the original signature still verifies, a wrong key fails the commitment.
SHARE_JS = """
async () => {
""" + _MODULES + """  const { rewrap } = await import("/sharing.js");
  const [alice, bob, nina1, nina2] = await Promise.all(
    [0, 1, 2, 3].map(() => c.generateIdentity()));
  Object.assign(state, { me: "alice", identity: alice, ikSpki: alice.spki, device: null });
  state.deviceLists.clear();
  const room = addRoom("share");
  const signed = async (user, signer, devices) => {
    const text = await d.listText(user, 1, "", devices);
    return { text: c.b64(text), signature: c.b64(await d.signList(signer.pss, text)),
             devices: devices.map((x) => ({ id: x.id, publicKey: c.derToPem(x.spki) })) };
  };
  const bobList = await signed("bob", bob, [{ id: "desk", spki: bob.spki }]);
  const ninaList = await signed("nina", nina1, [{ id: "n1", spki: nina1.spki },
                                                { id: "n2", spki: nina2.spki }]);
  for (const [name, ik, list] of [["bob", bob, bobList], ["nina", nina1, ninaList]]) {
    await observeKey(name, ik.spki);
    await t.observeList(name, list);
    room.members.set(name, { name, spki: ik.spki });
  }
  const head = { v: 1, h: await d.listHash(c.unb64(bobList.text)) };
  const say = async (text, hist, roomName = "share") => ({ userId: "bob", envelope: await c.seal({
    from: "bob", signingKey: bob.pss, to: ["room", roomName], plaintext: c.utf8(text),
    recipients: new Map([["alice", alice.spki], ["bob/desk", bob.spki]]),
    device: { dev: "desk", head, hist } }) });
  const rows = [await say("shared, old enough", 5), await say("never shared", 0),
                await say("moved from another room", 5, "other"),
                await say("only the latest", 1)];
  const entries = await rewrap(room, "nina", rows);
  const out = { shared: entries.map((e) => rows.findIndex((r) => r.envelope.id === e.id)),
                entryKeys: entries.map((e) => Object.keys(e.keys.encrypted_keys).sort()) };
  // nina's second device opens the first share: the maps grow, the signature
  // (which does not cover them) still verifies.
  const env = structuredClone(rows[0].envelope);
  Object.assign(env.encrypted_keys, entries[0].keys.encrypted_keys);
  Object.assign(env.key_ids, entries[0].keys.key_ids);
  out.opened = new TextDecoder().decode(await c.decrypt(env, "nina/n2", nina2.oaep));
  out.signature = await c.verifySignature(env, bob.spki);
  // A share of another key fails the key commitment.
  const wrong = await c.wrapKey(c.randomBytes(32), new Map([["nina/n2", nina2.spki]]));
  const bad = structuredClone(rows[0].envelope);
  Object.assign(bad.encrypted_keys, wrong.encrypted_keys);
  Object.assign(bad.key_ids, wrong.key_ids);
  try { await c.decrypt(bad, "nina/n2", nina2.oaep); out.wrongKey = "opened"; }
  catch (e) { out.wrongKey = e.reason; }
  return out;
}
"""


def historyShares(browser):
    """
    alice's page re-wraps for nina's two verified devices the keys of only
    the messages the signed history setting covers, in that room; nina's
    device opens a share with the original signature intact, and a share of
    a wrong key fails the key commitment.
    """
    page = browser.page(browser.newContext(), "history shares")
    try:
        got = page.evaluate(SHARE_JS)
    finally:
        page.context.close()
    expected = {"shared": [0, 3], "entryKeys": [["nina/n1", "nina/n2"]] * 2,
                "opened": "shared, old enough", "signature": True, "wrongKey": "commitment"}
    return True if got == expected else "!%r" % (got,)


# What a newcomer's page makes of history shared with it, served by a lying
# server stubbed in the page: alice joined "share" after bob wrote; the
# server forwards, as shares, a message beyond its signed history setting, a
# direct message, another room's message and one its sender let nobody new
# read. Each is refused with a warning line and never shown; the one the
# signed setting admits is shown. The join dialog sends its history field.
FORGED_SHARE_JS = """
async () => {
""" + _MODULES + """  const { loadHistory } = await import("/messaging.js");
  const { submitJoin } = await import("/dialogs.js");
  const [alice, bob] = await Promise.all([0, 1].map(() => c.generateIdentity()));
  Object.assign(state, { me: "alice", identity: alice, ikSpki: alice.spki, device: null });
  state.deviceLists.clear();
  const text = await d.listText("bob", 1, "", [{ id: "desk", spki: bob.spki }]);
  const bobList = { text: c.b64(text), signature: c.b64(await d.signList(bob.pss, text)),
                    devices: [{ id: "desk", publicKey: c.derToPem(bob.spki) }] };
  await observeKey("bob", bob.spki);
  await t.observeList("bob", bobList);
  const head = { v: 1, h: await d.listHash(text) };
  const say = async (words, hist, to = ["room", "share"]) => ({ userId: "bob",
    timestamp: new Date().toISOString(), envelope: await c.seal({
      from: "bob", signingKey: bob.pss, to, plaintext: c.utf8(words),
      recipients: new Map([["alice", alice.spki], ["bob/desk", bob.spki]]),
      device: { dev: "desk", head, hist } }) });
  const rows = [await say("beyond its window", 2),
                await say("a direct message", 0, ["user", "alice"]),
                await say("another room's", 5, ["room", "other"]), await say("for members only", 0),
                await say("may be read", 5)];
  const sent = [];
  state.conn = { request: async (type, fields) => {
    sent.push([type, fields]);
    if (type === "history") {
      return { roomId: fields.roomId, messages: fields.roomId === "share" ? rows : [] };
    }
    if (type === "join") {
      return { roomId: fields.roomId, members: [], history: fields.history ?? 0 };
    }
    return { members: [] };
  } };
  const room = addRoom("share");
  room.members.set("bob", { name: "bob", spki: bob.spki });
  room.joinedAt = Date.now() + 60000;
  await loadHistory(room);
  const out = {
    shown: room.items.filter((i) => i.type === "msg").map((i) => i.text),
    refused: room.items.filter((i) => i.bad).map((i) => i.text),
  };
  document.getElementById("join-room").value = "#fresh";
  document.getElementById("join-history").value = "7";
  await submitJoin({ preventDefault() {} });
  out.joinSent = sent.filter(([type]) => type === "join").map(([, fields]) => fields);
  return out;
}
"""


def forgedShares(browser):
    """
    A newcomer's page refuses, loudly and without showing their text, shares
    beyond the signed history setting, of a direct message, of another
    room's message and of one not shareable; it shows the admitted one. Its
    join dialog sends the history setting for a new room.
    """
    page = browser.page(browser.newContext(), "forged shares")
    try:
        got = page.evaluate(FORGED_SHARE_JS)
    finally:
        page.context.close()
    wrong = {}
    if got["shown"] != ["may be read"]:
        wrong["shown"] = got["shown"]
    refused = got["refused"]
    reasons = ("only the latest 2", "a direct message, not this room's",
               "sent to the room other", "did not let new members read it")
    if len(refused) != 4 or not all(
            any("shared with you as history was refused" in r and why in r for r in refused)
            for why in reasons):
        wrong["refused"] = refused
    if any(words in r for r in refused for words in ("beyond its window", "for members only")):
        wrong["leaked"] = refused
    if got["joinSent"] != [{"roomId": "#fresh", "history": 7}]:
        wrong["joinSent"] = got["joinSent"]
    return "!%r" % (wrong,) if wrong else True
