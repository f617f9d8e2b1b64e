"""
The browser check's devices part (protocol version 3), in a module of its own
to keep browser_check.py from growing: a lying server stubbed in the page (an
unsigned device, a swapped key, a forged approval, a rollback, a fork).

Run by browser_check.py; every function here takes what it needs and returns
what L{browser_check.Results.attempt} expects (True, or "!why").
"""

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

