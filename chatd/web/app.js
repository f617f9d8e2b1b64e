// chatd's browser client: sign-in, rooms, direct messages, members with
// fingerprints, key pinning and warnings, history and files. Every message is
// sealed here (crypto.js) for exactly the members the server lists, and every
// message received is opened and checked against the sender's pinned key
// before it is shown.

import * as e2e from "./crypto.js";
import * as store from "./store.js";
import { Connection, ServerError, Disconnected } from "./connection.js";
import { FileTransfers, formatSize } from "./files.js";
import { OwnKey } from "./ownkey.js";
import { SeenEnvelopes } from "./replay.js";

const fold = store.fold;
const USER_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_RE = /^#?[A-Za-z0-9_.-]{1,32}$/;
const HISTORY_PAGE = 50;
const SEND_ATTEMPTS = 4;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// -- state ------------------------------------------------------------------

const state = {
  conn: null,
  me: null, // the server's spelling of our name
  identity: null, // { spki, oaep, pss }
  ownKey: null, // an OwnKey: what the server says our key is
  pins: new Map(), // fold(name) -> { name, spki, verified, firstSeen, fp }
  alerts: new Map(), // fold(name) -> { name, spki, fp, oldFp }
  rooms: new Map(), // fold(room) -> conversation
  dms: new Map(), // fold(user) -> conversation
  active: null, // a conversation
  replay: new SeenEnvelopes(), // envelopes seen, kept with the account (replay.js)
  shown: new Set(), // envelopes shown in this page, live or from history
  held: [], // messages waiting for a key change to be trusted
  events: Promise.resolve(), // events are handled one at a time, in order
  incoming: Promise.resolve(), // so are the envelopes they carry
  outgoing: Promise.resolve(), // and the messages we send
  reconnecting: false,
  signedOut: false,
  fingerprints: new Map(),
};

class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" | "dm"
    this.name = name;
    this.items = []; // { type: "msg"|"system"|"file", time, ... }
    this.members = new Map(); // rooms: fold(name) -> { name, spki }
    this.peerSpki = null; // dms
    this.unread = 0;
    this.historyState = "none"; // none | loading | loaded
    this.oldest = null; // server timestamp string of the oldest history row
    this.hasOlder = false;
    this.password = "";
  }

  get key() {
    return fold(this.name);
  }
}

function newOwnKey() {
  return new OwnKey(() => {
    console.warn("chatd: the server gives another key for", state.me);
    renderSelfKey();
    renderComposer();
  });
}
state.ownKey = newOwnKey();

// The server says our name has key `spki`: compared with this browser's key,
// never used. Called before any await, so that a claim is checked in the
// order the server made it.
function checkOwnKey(name, spki) {
  if (!state.me || fold(name) !== fold(state.me)) return false;
  state.ownKey.check(spki, state.identity?.spki);
  return true;
}

const transfers = new FileTransfers({
  conn: () => state.conn,
  me: () => state.me,
  identity: () => state.identity,
  sealFor: (conv, plaintext, domain, send) => sealAndSend(conv, plaintext, domain, send),
  senderKey: (name, conv) => senderKey(name, conv),
  replayed: (env) => state.replay.replayed(env.from, env.id, env.ts),
  remember: (env) => state.replay.remember(env.from, env.id, env.ts),
  conversationFor: (from, target) => {
    if (target.kind === "room") return state.rooms.get(fold(target.name)) || dmWith(from);
    return fold(from) === fold(state.me) ? dmWith(target.name) : dmWith(from);
  },
  add: (conv, transfer) => {
    addItem(conv, { type: "file", time: transfer.time, transfer, from: transfer.direction === "out" ? state.me : transfer.from });
  },
  changed: (transfer) => updateFileCard(transfer),
  unsupported: () => {
    $("btn-file").disabled = true;
    $("btn-file").title = "This server does not support file transfer over WebSocket yet";
  },
});

// -- small helpers ----------------------------------------------------------

function toast(text, kind = "") {
  const node = el("div", { class: `toast ${kind}`, role: "status", text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 7000 : 4500);
}

function hue(name) {
  let h = 0;
  for (const c of fold(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}

function avatar(name, small = false) {
  const node = el("span", { class: small ? "avatar small" : "avatar", text: name.replace(/^#/, "").slice(0, 1) || "?" });
  node.style.background = `hsl(${hue(name)} 55% 48%)`;
  return node;
}

function timeOf(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function dayOf(ms) {
  const date = new Date(ms);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (date.toDateString() === today.toDateString()) return "Today";
  if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

function parseTime(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : Date.now();
}

async function fingerprintOf(spki) {
  const k = e2e.b64(spki);
  let fp = state.fingerprints.get(k);
  if (!fp) {
    fp = await e2e.fingerprint(spki);
    state.fingerprints.set(k, fp);
  }
  return fp;
}

// Eight groups a line, so a fingerprint reads like a table.
function fingerprintLines(fp) {
  const groups = fp.split(" ");
  const lines = [];
  for (let i = 0; i < groups.length; i += 8) lines.push(groups.slice(i, i + 8).join(" "));
  return lines.join("\n");
}

function describeError(e) {
  if (e instanceof ServerError) return `${e.message}`;
  return e?.message || String(e);
}

function shownKey(env) {
  return `${fold(env.from)}\n${env.id}`;
}

// -- keys: pinning and warnings ------------------------------------------

// The server says `name` has key `spki`. Pin it on first sight; if it differs
// from the pin, raise the alarm (and keep the pin until the person decides).
// Returns "self", "new", "same" or "changed".
async function observeKey(name, spki) {
  if (fold(name) === fold(state.me)) return "self";
  const key = fold(name);
  const pin = state.pins.get(key);
  if (!pin) {
    const fresh = { name, spki, verified: false, firstSeen: Date.now(), fp: await fingerprintOf(spki) };
    if (state.pins.has(key)) return observeKey(name, spki); // pinned meanwhile
    state.pins.set(key, fresh);
    store.savePin(state.me, name, fresh).catch((e) => console.error("saving a pin", e));
    return "new";
  }
  if (e2e.equalBytes(pin.spki, spki)) {
    if (state.alerts.delete(key)) renderAlerts();
    return "same";
  }
  const existing = state.alerts.get(key);
  if (!existing || !e2e.equalBytes(existing.spki, spki)) {
    state.alerts.set(key, { name, spki, fp: await fingerprintOf(spki), oldFp: pin.fp || (await fingerprintOf(pin.spki)) });
    for (const conv of conversationsWith(name)) {
      systemNote(conv, `Security warning: ${name}'s key has changed. Sending to ${name} is blocked until you verify the new key.`, true);
    }
    renderAlerts();
    renderSidebar();
  }
  return "changed";
}

function conversationsWith(name) {
  const key = fold(name);
  const out = [];
  for (const room of state.rooms.values()) if (room.members.has(key)) out.push(room);
  const dm = state.dms.get(key);
  if (dm) out.push(dm);
  return out;
}

async function trustNewKey(name) {
  const key = fold(name);
  const alert = state.alerts.get(key);
  if (!alert) return;
  const pin = { name: alert.name, spki: alert.spki, verified: true, firstSeen: Date.now(), fp: alert.fp };
  state.pins.set(key, pin);
  state.alerts.delete(key);
  await store.savePin(state.me, alert.name, pin);
  for (const conv of conversationsWith(name)) systemNote(conv, `You verified ${alert.name}'s new key.`);
  renderAll();
  // Messages that waited for this decision are checked again with the new pin.
  const held = state.held.filter((h) => fold(h.sender) === key);
  state.held = state.held.filter((h) => fold(h.sender) !== key);
  for (const h of held) queueIncoming(h);
}

async function markVerified(name) {
  const pin = state.pins.get(fold(name));
  if (!pin) return;
  pin.verified = true;
  await store.savePin(state.me, pin.name, pin);
  renderMembers();
}

// The key a message from `name` must be signed with: the pinned one; on first
// sight, the one the server gives for that user (and it is pinned).
async function senderKey(name, conv) {
  if (fold(name) === fold(state.me)) return state.identity.spki;
  const pin = state.pins.get(fold(name));
  if (pin) return pin.spki;
  let spki = conv?.members?.get(fold(name))?.spki;
  if (!spki && conv?.kind === "dm" && fold(conv.name) === fold(name)) spki = conv.peerSpki;
  if (!spki) {
    try {
      const reply = await state.conn.request("get_keys", { userId: name });
      const entry = reply.members.find((m) => fold(m.userId) === fold(name));
      if (entry) spki = e2e.pemToDer(entry.publicKey);
    } catch (e) {
      return null;
    }
  }
  if (!spki) return null;
  await observeKey(name, spki);
  return state.pins.get(fold(name))?.spki ?? null;
}

// -- conversations ----------------------------------------------------------

function dmWith(name) {
  const key = fold(name);
  let conv = state.dms.get(key);
  if (!conv) {
    conv = new Conversation("dm", name);
    state.dms.set(key, conv);
    renderSidebar();
  }
  return conv;
}

function addRoom(name) {
  const key = fold(name);
  let room = state.rooms.get(key);
  if (!room) {
    room = new Conversation("room", name);
    state.rooms.set(key, room);
    store.rememberRoom(state.me, name).catch(() => {});
    renderSidebar();
  } else if (room.name !== name) {
    room.name = name;
  }
  return room;
}

function removeRoom(room, why) {
  state.rooms.delete(room.key);
  store.forgetRoom(state.me, room.name).catch(() => {});
  if (state.active === room) {
    const next = state.rooms.values().next().value || state.dms.values().next().value || null;
    select(next);
  }
  renderSidebar();
  if (why) toast(why);
}

async function setMembers(room, members, announce) {
  for (const m of members) checkOwnKey(m.userId, e2e.pemToDer(m.publicKey));
  const before = new Map(room.members);
  const now = new Map();
  for (const m of members) {
    const own = fold(m.userId) === fold(state.me);
    const spki = own && state.identity ? state.identity.spki : e2e.pemToDer(m.publicKey);
    now.set(fold(m.userId), { name: m.userId, spki, fp: await fingerprintOf(spki) });
  }
  room.members = now;
  for (const m of now.values()) await observeKey(m.name, m.spki);
  if (announce) {
    for (const [key, m] of now) if (!before.has(key)) systemNote(room, `${m.name} is a member now (the server's list).`);
    for (const [key, m] of before) if (!now.has(key)) systemNote(room, `${m.name} is no longer a member (the server's list).`);
  }
  if (state.active === room) {
    renderHeader();
    renderMembers();
  }
}

function addItem(conv, item) {
  conv.items.push(item);
  // Keep the list in time order; history arrives after newer live messages.
  let i = conv.items.length - 1;
  while (i > 0 && conv.items[i - 1].time > item.time) {
    conv.items[i] = conv.items[i - 1];
    i--;
  }
  conv.items[i] = item;
  if (state.active === conv) {
    renderMessages();
  } else if (item.type !== "system" && !item.history && fold(item.from || "") !== fold(state.me)) {
    conv.unread++;
    renderSidebar();
  }
}

function systemNote(conv, text, bad = false) {
  addItem(conv, { type: "system", time: Date.now(), text, bad });
}

function select(conv) {
  state.active = conv;
  if (conv) conv.unread = 0;
  renderSidebar();
  renderHeader();
  renderMessages(true);
  renderMembers();
  renderAlerts();
  renderComposer();
  if (conv && conv.kind === "room" && conv.historyState === "none") loadHistory(conv);
  if (conv && conv.kind === "dm" && !conv.peerSpki) refreshPeerKey(conv).catch(() => {});
  if (conv) $("composer-input").focus();
}

async function refreshPeerKey(conv) {
  const reply = await state.conn.request("get_keys", { userId: conv.name });
  const entry = reply.members.find((m) => fold(m.userId) === conv.key);
  if (!entry) throw new Error(`no key for ${conv.name}`);
  checkOwnKey(entry.userId, e2e.pemToDer(entry.publicKey));
  conv.name = entry.userId;
  conv.peerSpki = e2e.pemToDer(entry.publicKey);
  conv.peerFp = await fingerprintOf(conv.peerSpki);
  await observeKey(entry.userId, conv.peerSpki);
  if (state.active === conv) {
    renderHeader();
    renderMembers();
    renderComposer();
  }
  renderSidebar();
}

// -- receiving ----------------------------------------------------------------

function queueIncoming(job) {
  state.incoming = state.incoming.then(() => receive(job)).catch((e) => console.error("chatd: receiving", e));
  return state.incoming;
}

function dropped(conv, sender, why, live) {
  console.warn(`chatd: dropped a message from ${sender}: ${why}`);
  if (conv) systemNote(conv, `A message from ${sender} was dropped: ${why}.`, true);
  else if (live) toast(`A message from ${sender} was dropped: ${why}`, "error");
}

// Open one envelope and show it, or drop it. `job`: { conv, sender, envelope,
// history }.
async function receive(job) {
  const { conv, sender, envelope, history } = job;
  let env;
  try {
    env = e2e.checkEnvelope(envelope);
  } catch (e) {
    return dropped(conv, sender, "it is malformed", !history);
  }
  if (env.from !== sender) return dropped(conv, sender, "its sender does not match", !history);
  const [[toKind, toName]] = Object.entries(env.to);
  if (conv.kind === "room") {
    if (toKind !== "room" || fold(toName) !== conv.key) return dropped(conv, sender, "it was sent to another room", !history);
  } else {
    const peer = fold(sender) === fold(state.me) ? conv.key : fold(state.me);
    if (toKind !== "user" || fold(toName) !== peer) return dropped(conv, sender, "it was sent to someone else", !history);
  }
  // History is the server's record: shown once per page. What comes live
  // must be new to this account (replay.js), across page loads too.
  const seenKey = shownKey(env);
  const replayed = state.shown.has(seenKey) ? "it repeats a message already received"
    : history ? null : state.replay.replayed(env.from, env.id, env.ts);
  if (replayed) {
    if (!history && !job.retry) dropped(conv, sender, replayed, true);
    return;
  }
  let plaintext;
  try {
    plaintext = await e2e.decrypt(env, state.me, state.identity.oaep);
  } catch (e) {
    if (history && /no key for you|does not unwrap/.test(e.message)) {
      // Sealed for a key of ours this browser does not hold: said once per page.
      conv.unreadable = (conv.unreadable || 0) + 1;
      return;
    }
    return dropped(conv, sender, e.message.replace(/^envelope: /, ""), !history);
  }
  // Our own messages are checked with this browser's key (senderKey), never
  // with the key the server gives for us.
  const spki = await senderKey(sender, conv);
  const ok = spki && (await e2e.verifySignature(env, spki));
  if (!ok) {
    if (state.alerts.has(fold(sender))) {
      state.held.push({ ...job, retry: true });
      if (!job.retry) systemNote(conv, `A message from ${sender} is held until you verify ${sender}'s new key.`, true);
      return;
    }
    return dropped(conv, sender, "its signature does not match the sender's pinned key", !history);
  }
  if (state.shown.has(seenKey)) return;
  state.shown.add(seenKey);
  if (!history) state.replay.remember(env.from, env.id, env.ts);
  let text;
  try {
    text = e2e.fromUtf8(plaintext);
  } catch (e) {
    text = new TextDecoder().decode(plaintext);
  }
  // The time shown is the one the sender signed; the server's is only its word.
  addItem(conv, { type: "msg", id: env.id, from: env.from, text, time: env.ts, history });
}

async function loadHistory(room, older = false) {
  if (room.historyState === "loading") return;
  const previous = room.historyState;
  room.historyState = "loading";
  renderMessages();
  const fields = { roomId: room.name, limit: HISTORY_PAGE };
  if (older && room.oldest) fields.before = room.oldest;
  try {
    const reply = await state.conn.request("history", fields);
    const rows = reply.messages || [];
    if (rows.length) {
      if (!room.oldest || parseTime(rows[0].timestamp) < parseTime(room.oldest)) room.oldest = rows[0].timestamp;
    }
    room.hasOlder = rows.length > 0 && (older || rows.length >= HISTORY_PAGE);
    const scroller = $("messages");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const jobs = rows.map((row) => queueIncoming({
      conv: room, sender: row.userId, envelope: row.envelope, history: true,
    }));
    await Promise.all(jobs);
    if (room.unreadable) {
      const n = room.unreadable;
      room.unreadable = 0;
      addItem(room, {
        type: "system", time: rows.length ? parseTime(rows[0].timestamp) - 1 : Date.now(), history: true,
        text: `${n} earlier message${n === 1 ? " was" : "s were"} sealed for another key of yours and cannot be read in this browser.`,
      });
    }
    room.historyState = "loaded";
    if (state.active === room) {
      renderMessages(!older);
      if (older) scroller.scrollTop = scroller.scrollHeight - fromBottom;
    }
  } catch (e) {
    room.historyState = previous === "loaded" ? "loaded" : "none";
    if (e instanceof ServerError) {
      room.historyState = "loaded";
      systemNote(room, `History could not be loaded: ${describeError(e)}`, true);
    }
    renderMessages();
  }
}

// -- sending --------------------------------------------------------------------

class Blocked extends Error {
  constructor(names) {
    super(`Sending is blocked: the key of ${names.join(", ")} changed and is not verified yet.`);
    this.names = names;
  }
}

class OwnKeyBlocked extends Error {
  constructor() {
    super("Sending is blocked: the server gives another key for you; the server, or someone with your password, changed your key.");
  }
}

// Who a message to `conv` is sealed for. Our own entry is always sealed with
// this browser's key, whatever the server says ours is.
async function recipientsFor(conv) {
  if (state.ownKey.conflict) throw new OwnKeyBlocked();
  const recipients = new Map();
  const blocked = [];
  if (conv.kind === "room") {
    for (const m of conv.members.values()) {
      if (fold(m.name) === fold(state.me)) continue;
      await observeKey(m.name, m.spki);
      if (state.alerts.has(fold(m.name))) blocked.push(m.name);
      recipients.set(m.name, m.spki);
    }
  } else {
    if (!conv.peerSpki) await refreshPeerKey(conv);
    await observeKey(conv.name, conv.peerSpki);
    if (state.alerts.has(conv.key)) blocked.push(conv.name);
    if (conv.key !== fold(state.me)) recipients.set(conv.name, conv.peerSpki);
  }
  recipients.set(state.me, state.identity.spki);
  if (state.ownKey.conflict) throw new OwnKeyBlocked();
  if (blocked.length) throw new Blocked(blocked);
  return recipients;
}

// Seal `plaintext` for the conversation's members and hand it to `send`; when
// the server answers stale_recipients, take its member list (pinning and
// warning as usual) and seal again for it.
async function sealAndSend(conv, plaintext, domain, send) {
  for (let attempt = 1; ; attempt++) {
    const recipients = await recipientsFor(conv);
    const to = conv.kind === "room" ? ["room", conv.name] : ["user", conv.name];
    const env = await e2e.seal({ from: state.me, signingKey: state.identity.pss, to, recipients, plaintext, domain });
    try {
      const reply = await send(env);
      // Our own envelope, seen again from the server, is a replay.
      state.shown.add(shownKey(env));
      state.replay.remember(env.from, env.id, env.ts);
      return { env, reply };
    } catch (e) {
      if (!(e instanceof ServerError) || e.code !== "stale_recipients" || attempt >= SEND_ATTEMPTS) throw e;
      await applyStaleMembers(conv, e.reply.members || []);
    }
  }
}

async function applyStaleMembers(conv, members) {
  for (const m of members) checkOwnKey(m.userId, e2e.pemToDer(m.publicKey));
  if (conv.kind === "room") {
    await setMembers(conv, members, true);
    return;
  }
  for (const m of members) {
    const spki = e2e.pemToDer(m.publicKey);
    if (fold(m.userId) === fold(state.me)) continue;
    if (fold(m.userId) === conv.key) {
      conv.name = m.userId;
      conv.peerSpki = spki;
      conv.peerFp = await fingerprintOf(spki);
    }
    await observeKey(m.userId, spki);
  }
}

// Messages go out one at a time, in the order they were written; one refused
// for the rate limit waits as long as the server says and is tried again.
function sendText(conv, text, item = null) {
  if (!item) {
    item = { type: "msg", from: state.me, text, time: Date.now(), pending: true };
    addItem(conv, item);
  }
  state.outgoing = state.outgoing.then(() => sendNow(conv, item)).catch((e) => console.error("chatd: sending", e));
}

async function sendNow(conv, item) {
  const plaintext = e2e.utf8(item.text);
  for (let attempt = 1; ; attempt++) {
    try {
      const { env } = await sealAndSend(conv, plaintext, e2e.MESSAGE, (envelope) => conv.kind === "room"
        ? state.conn.request("chat_message", { roomId: conv.name, envelope })
        : state.conn.request("dm", { to: conv.name, envelope }));
      item.id = env.id;
      item.pending = false;
      item.waiting = null;
      conv.items.splice(conv.items.indexOf(item), 1);
      item.time = env.ts;
      addItem(conv, item);
      return;
    } catch (e) {
      if (e instanceof ServerError && e.code === "rate_limited" && attempt < 6) {
        const seconds = Number((/retry in (\d+(?:\.\d+)?)/.exec(e.message) || [])[1]) || 1;
        item.waiting = "waiting: sending too fast";
        if (state.active === conv) renderMessages();
        await new Promise((resolve) => setTimeout(resolve, Math.min(seconds, 10) * 1000));
        continue;
      }
      item.pending = false;
      item.waiting = null;
      item.failed = e instanceof Blocked ? "not sent: key change not verified"
        : e instanceof OwnKeyBlocked ? "not sent: the server changed your key" : `not sent: ${describeError(e)}`;
      if (state.active === conv) renderMessages();
      if (!(e instanceof Blocked) && !(e instanceof OwnKeyBlocked) && !(e instanceof ServerError)) toast(describeError(e), "error");
      renderComposer();
      return;
    }
  }
}

function retrySend(conv, item) {
  item.failed = null;
  item.pending = true;
  if (state.active === conv) renderMessages();
  sendText(conv, item.text, item);
}

// -- events ------------------------------------------------------------------------

function queueEvent(message) {
  state.events = state.events.then(() => onEvent(message)).catch((e) => console.error("chatd: event", message.type, e));
}

// Hold events back (they queue) until the returned function is called: while
// signing in, events for rooms the server restores must wait for our state.
function holdEvents() {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  state.events = state.events.then(() => gate);
  return release;
}

async function onEvent(message) {
  if (!state.me || !state.identity) return;
  if (transfers.handle(message)) return;
  switch (message.type) {
    case "chat_message": {
      const room = state.rooms.get(fold(message.roomId));
      if (!room) return;
      queueIncoming({ conv: room, sender: message.userId, envelope: message.envelope });
      return;
    }
    case "dm": {
      const own = fold(message.userId) === fold(state.me);
      const peer = own ? message.envelope?.to?.user : message.userId;
      if (typeof peer !== "string" || !USER_RE.test(peer)) return;
      queueIncoming({ conv: dmWith(peer), sender: message.userId, envelope: message.envelope });
      return;
    }
    case "user_joined": {
      const spki = e2e.pemToDer(message.publicKey);
      if (checkOwnKey(message.userId, spki)) {
        // Our account is in a room we did not ask for here: restored at sign-in,
        // or joined by another of our sessions.
        if (!state.rooms.has(fold(message.roomId))) {
          const room = addRoom(message.roomId);
          await refreshRoom(room);
        }
        return;
      }
      const room = state.rooms.get(fold(message.roomId));
      if (!room) return;
      room.members.set(fold(message.userId), { name: message.userId, spki, fp: await fingerprintOf(spki) });
      await observeKey(message.userId, spki);
      systemNote(room, `${message.userId} joined`);
      if (state.active === room) {
        renderHeader();
        renderMembers();
      }
      return;
    }
    case "user_left": {
      const room = state.rooms.get(fold(message.roomId));
      if (!room) return;
      if (fold(message.userId) === fold(state.me)) {
        removeRoom(room, `You left ${room.name}`);
        return;
      }
      room.members.delete(fold(message.userId));
      systemNote(room, `${message.userId} left`);
      if (state.active === room) {
        renderHeader();
        renderMembers();
      }
      return;
    }
    case "renamed": {
      for (const room of state.rooms.values()) {
        const m = room.members.get(fold(message.old));
        if (!m) continue;
        room.members.delete(fold(message.old));
        // The key follows in key_changed if it differs; ask to be sure.
        room.members.set(fold(message.new), { ...m, name: message.new });
        systemNote(room, `${message.old} is now ${message.new}`);
        refreshRoom(room, false).catch(() => {});
      }
      const dm = state.dms.get(fold(message.old));
      if (dm) systemNote(dm, `${message.old} is now known as ${message.new}`);
      renderAll();
      return;
    }
    case "key_changed": {
      const spki = e2e.pemToDer(message.publicKey);
      if (checkOwnKey(message.userId, spki)) return;
      const fp = await fingerprintOf(spki);
      for (const room of state.rooms.values()) {
        const m = room.members.get(fold(message.userId));
        if (m) room.members.set(fold(message.userId), { ...m, spki, fp });
      }
      const dm = state.dms.get(fold(message.userId));
      if (dm) {
        dm.peerSpki = spki;
        dm.peerFp = fp;
      }
      await observeKey(message.userId, spki);
      renderAll();
      return;
    }
    case "warning":
      toast(`Server: ${message.message}`, "error");
      return;
    default:
      console.debug("chatd: unhandled event", message.type);
  }
}

// Fetch a room's members (and its history, the first time).
async function refreshRoom(room, history = true) {
  try {
    const reply = await state.conn.request("get_keys", { roomId: room.name });
    await setMembers(room, reply.members, false);
  } catch (e) {
    systemNote(room, `Members could not be loaded: ${describeError(e)}`, true);
  }
  if (history && state.active === room && room.historyState === "none") loadHistory(room);
  if (!state.active) select(room);
}

// -- rendering --------------------------------------------------------------------

function renderAll() {
  renderSidebar();
  renderHeader();
  renderAlerts();
  renderMembers();
  renderComposer();
  renderMessages();
}

function convHasAlert(conv) {
  if (conv.kind === "dm") return state.alerts.has(conv.key);
  for (const key of conv.members.keys()) if (state.alerts.has(key)) return true;
  return false;
}

function renderSidebar() {
  const lists = [
    [$("room-list"), [...state.rooms.values()], "No rooms yet"],
    [$("dm-list"), [...state.dms.values()], "No direct messages"],
  ];
  for (const [list, convs, empty] of lists) {
    list.replaceChildren();
    convs.sort((a, b) => a.key.localeCompare(b.key));
    if (!convs.length) list.append(el("li", { class: "empty", text: empty }));
    for (const conv of convs) {
      const classes = [state.active === conv ? "active" : "", conv.unread ? "unread" : ""].join(" ").trim();
      list.append(el("li", { class: classes || null, dataset: { conv: conv.name } },
        el("button", { type: "button", onclick: () => select(conv), title: conv.name },
          conv.kind === "room" ? el("span", { class: "hash", text: "#" }) : avatar(conv.name, true),
          el("span", { class: "conv-name", text: conv.kind === "room" ? conv.name.replace(/^#/, "") : conv.name }),
          convHasAlert(conv) ? el("span", { class: "warn-dot", title: "A key changed", text: "!" }) : null,
          conv.unread ? el("span", { class: "badge", text: conv.unread }) : null)));
    }
  }
}

function renderHeader() {
  const conv = state.active;
  $("btn-leave").classList.toggle("hidden", !conv || conv.kind !== "room");
  $("btn-members").classList.toggle("hidden", !conv);
  if (!conv) {
    $("chat-name").textContent = "No conversation";
    $("chat-sub").textContent = "";
    return;
  }
  $("chat-name").textContent = conv.kind === "room" ? conv.name : `@${conv.name}`;
  if (conv.kind === "room") {
    const n = conv.members.size;
    $("chat-sub").textContent = `${n} member${n === 1 ? "" : "s"} · end-to-end encrypted`;
  } else {
    $("chat-sub").textContent = conv.peerFp ? `Direct message · key ${conv.peerFp.split(" ").slice(0, 4).join(" ")} …` : "Direct message · end-to-end encrypted";
  }
}

function renderAlerts() {
  const box = $("key-alerts");
  box.replaceChildren();
  const conv = state.active;
  if (!conv) return;
  const names = conv.kind === "dm" ? [conv.key] : [...conv.members.keys()];
  for (const key of names) {
    const alert = state.alerts.get(key);
    if (!alert) continue;
    box.append(el("div", { class: "alert key-alert", role: "alert", dataset: { user: alert.name } },
      el("h3", { text: `⚠ ${alert.name}'s key has changed` }),
      el("p", { text: `The server now gives a different key for ${alert.name}. This happens when they sign in from a new browser — or when someone is impersonating them. Nothing will be sent to ${alert.name} until you verify the new key with them over another channel (in person, by phone).` }),
      el("p", { text: "Pinned fingerprint:" }), el("pre", { class: "fingerprint", text: fingerprintLines(alert.oldFp) }),
      el("p", { text: "New fingerprint:" }), el("pre", { class: "fingerprint", text: fingerprintLines(alert.fp) }),
      el("div", { class: "alert-actions" },
        el("button", { type: "button", class: "trust", onclick: () => trustNewKey(alert.name) }, `I verified it: trust ${alert.name}'s new key`))));
  }
}

async function renderSelfKey() {
  const box = $("self-key-alert");
  const claimed = state.ownKey.conflict;
  box.classList.toggle("hidden", !claimed);
  if (!claimed || !state.identity) return;
  const [ours, theirs] = [await fingerprintOf(state.identity.spki), await fingerprintOf(claimed)];
  if (state.ownKey.conflict !== claimed) return;
  box.replaceChildren(
    el("h3", { text: `⚠ The server gives another key for you (${state.me})` }),
    el("p", { text: "Either the server is lying, or someone with your password (perhaps you, in another browser or client) changed your key. Whoever holds that key may read what is sent to you. Nothing is sent from this page until you choose to use this browser's key again." }),
    el("p", { text: "This browser's key:" }), el("pre", { class: "fingerprint", text: fingerprintLines(ours) }),
    el("p", { text: "The key the server gives for you:" }), el("pre", { class: "fingerprint", text: fingerprintLines(theirs) }),
    el("div", { class: "alert-actions" },
      el("button", { type: "button", class: "publish-own-key", onclick: publishOwnKey }, "Use this browser's key for my account")));
}

async function publishOwnKey() {
  try {
    state.ownKey.setAside();
    let replaced = state.ownKey.conflict;
    try {
      await state.conn.request("set_key", { publicKey: e2e.derToPem(state.identity.spki) });
      // Events the server sent before it had our key still name the old one.
      await state.events;
      state.ownKey.clear();
    } catch (e) {
      replaced = null;
      throw e;
    } finally {
      state.ownKey.resume(replaced);
    }
    renderSelfKey();
    renderComposer();
    toast("Your account now uses this browser's key; your contacts are told it changed.");
    for (const room of state.rooms.values()) refreshRoom(room, false);
  } catch (e) {
    toast(describeError(e), "error");
  }
}

function renderComposer() {
  const conv = state.active;
  const input = $("composer-input");
  const blocked = $("composer-blocked");
  $("composer").classList.toggle("hidden", !conv);
  $("btn-file").disabled = !conv || !transfers.supported;
  if (!conv) {
    blocked.classList.add("hidden");
    return;
  }
  const names = (conv.kind === "dm" ? [conv.key] : [...conv.members.keys()])
    .filter((k) => state.alerts.has(k)).map((k) => state.alerts.get(k).name);
  const ownKey = Boolean(state.ownKey.conflict);
  const isBlocked = names.length > 0 || ownKey;
  $("composer-send").disabled = isBlocked;
  input.disabled = isBlocked;
  input.placeholder = isBlocked ? "Sending is blocked until you verify the changed key" : `Message ${conv.kind === "room" ? conv.name : "@" + conv.name}`;
  blocked.classList.toggle("hidden", !isBlocked);
  blocked.textContent = ownKey ? "Sending is blocked: the server gives another key for you. See the warning above."
    : isBlocked ? `Sending is blocked: ${names.join(", ")} changed key. Verify it above to continue.` : "";
}

function renderMessages(toBottom = false) {
  const box = $("messages");
  const conv = state.active;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  if (!conv) {
    box.replaceChildren($("empty-state") || emptyState());
    $("empty-state").classList.remove("hidden");
    return;
  }
  const nodes = [];
  if (conv.kind === "room") {
    if (conv.historyState === "loading") nodes.push(el("p", { class: "system", text: "Loading history…" }));
    else if (conv.hasOlder) nodes.push(el("button", { type: "button", class: "load-older ghost", onclick: () => loadHistory(conv, true) }, "Load older messages"));
  }
  let lastDay = null;
  let lastFrom = null;
  let lastTime = 0;
  for (const item of conv.items) {
    const day = dayOf(item.time);
    if (day !== lastDay) {
      nodes.push(el("div", { class: "day" }, el("span", { text: day })));
      lastDay = day;
      lastFrom = null;
    }
    if (item.type === "system") {
      nodes.push(el("p", { class: item.bad ? "system bad" : "system", text: item.text }));
      lastFrom = null;
      continue;
    }
    const cont = item.type === "msg" && lastFrom === fold(item.from) && item.time - lastTime < 5 * 60000;
    lastFrom = item.type === "msg" ? fold(item.from) : null;
    lastTime = item.time;
    const classes = ["message", cont ? "cont" : "", item.pending ? "pending" : "", item.failed ? "failed" : ""].join(" ").replace(/\s+/g, " ").trim();
    const body = el("div", { class: "body" },
      cont ? null : el("div", { class: "meta" },
        el("span", { class: "sender", text: item.from }),
        el("time", { class: "time", datetime: new Date(item.time).toISOString(), title: new Date(item.time).toLocaleString(), text: timeOf(item.time) })));
    if (item.type === "msg") {
      body.append(el("div", { class: "text", text: item.text },
        item.pending ? el("span", { class: "state", text: item.waiting || "sending…" }) : null,
        item.failed ? el("span", { class: "state", text: item.failed }) : null,
        item.failed ? el("button", { type: "button", class: "link-btn retry", onclick: () => retrySend(conv, item) }, "Retry") : null));
    } else if (item.type === "file") {
      body.append(fileCard(item.transfer));
    }
    nodes.push(el("div", { class: classes, dataset: { from: item.from, id: item.id || "" } }, avatar(item.from), body));
  }
  if (!conv.items.length && conv.historyState !== "loading") {
    nodes.push(el("p", { class: "system", text: conv.kind === "room" ? `This is the start of ${conv.name}.` : `This is the start of your conversation with ${conv.name}.` }));
  }
  box.replaceChildren(...nodes);
  if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
}

function emptyState() {
  return el("div", { id: "empty-state", class: "empty-state" },
    el("h3", { text: "Welcome to chatd" }),
    el("p", { text: "Join a room or start a direct message from the sidebar. Everything you send is encrypted in this page for exactly the people in the conversation." }),
    el("button", { type: "button", class: "primary", onclick: openJoin }, "Join a room"));
}

const fileCards = new Map();

function fileIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "file-icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M6 2.8h8l4.2 4.2v14.2H6zM14 2.8V7h4.2");
  svg.append(path);
  return svg;
}

function fileCard(transfer) {
  const card = el("div", { class: "file-card" });
  fileCards.set(transfer, card);
  fillFileCard(card, transfer);
  return card;
}

function fillFileCard(card, transfer) {
  const out = transfer.direction === "out";
  const bad = ["failed", "cancelled", "unsupported"].includes(transfer.state);
  card.className = bad ? "file-card bad" : "file-card";
  card.dataset.state = transfer.state;
  const parts = [
    el("div", { class: "file-name" }, fileIcon(), transfer.name || "(file)"),
    el("div", { class: "file-info", text: [transfer.size ? formatSize(transfer.size) : null, out ? "you are sending" : `from ${transfer.from}`, transfer.detail].filter(Boolean).join(" · ") }),
  ];
  if (["sending", "receiving", "sent"].includes(transfer.state)) {
    parts.push(el("progress", { max: "1", value: String(transfer.progress || 0) }));
  }
  const actions = el("div", { class: "file-actions" });
  if (transfer.state === "offered") {
    actions.append(
      el("button", { type: "button", class: "primary file-accept", onclick: () => transfers.answer(transfer, true) }, "Accept"),
      el("button", { type: "button", class: "file-decline", onclick: () => transfers.answer(transfer, false) }, "Decline"));
  } else if (["waiting", "sending", "receiving"].includes(transfer.state)) {
    actions.append(el("button", { type: "button", onclick: () => transfers.cancel(transfer) }, "Cancel"));
  } else if (transfer.state === "done" && transfer.url) {
    actions.append(el("a", { class: "download", href: transfer.url, download: transfer.name, rel: "noopener" }, `Download ${transfer.name}`));
  }
  if (actions.childElementCount) parts.push(actions);
  card.replaceChildren(...parts);
}

function updateFileCard(transfer) {
  const card = fileCards.get(transfer);
  if (card && card.isConnected) fillFileCard(card, transfer);
  else if (state.active === transfer.conv) renderMessages();
  if (transfer.state === "unsupported") renderComposer();
}

function renderMembers() {
  const panel = $("members-panel");
  const list = $("member-list");
  const conv = state.active;
  if (!conv) {
    panel.classList.add("hidden");
    return;
  }
  const entries = [];
  if (conv.kind === "room") {
    for (const m of conv.members.values()) entries.push(m);
  } else {
    entries.push({ name: state.me, spki: state.identity.spki });
    if (conv.peerSpki && conv.key !== fold(state.me)) entries.push({ name: conv.name, spki: conv.peerSpki, fp: conv.peerFp });
  }
  entries.sort((a, b) => fold(a.name).localeCompare(fold(b.name)));
  list.replaceChildren();
  for (const m of entries) {
    const key = fold(m.name);
    const self = key === fold(state.me);
    const pin = state.pins.get(key);
    const alert = state.alerts.get(key);
    let tag;
    if (self) tag = el("span", { class: "tag you", text: "you" });
    else if (alert) tag = el("span", { class: "tag changed", text: "KEY CHANGED" });
    else if (pin?.verified) tag = el("span", { class: "tag verified", text: "verified" });
    else tag = el("span", { class: "tag tofu", text: "not verified" });
    const fpNode = el("pre", { class: "fingerprint", text: m.fp ? fingerprintLines(m.fp) : "…" });
    if (!m.fp) fingerprintOf(m.spki).then((fp) => { fpNode.textContent = fingerprintLines(fp); });
    const actions = el("div", { class: "member-actions" });
    if (!self && alert) {
      actions.append(el("button", { type: "button", onclick: () => trustNewKey(m.name) }, "Verify new key"));
    } else if (!self && pin && !pin.verified) {
      actions.append(el("button", { type: "button", onclick: () => openVerify(m.name) }, "Verify"));
    }
    if (!self && conv.kind === "room") {
      actions.append(el("button", { type: "button", onclick: () => openDm(m.name) }, "Message"));
    }
    list.append(el("li", { dataset: { user: m.name } },
      el("div", { class: "member-top" }, avatar(m.name, true), el("span", { class: "name", text: m.name }), tag),
      fpNode, actions.childElementCount ? actions : null));
  }
}

// -- dialogs and actions --------------------------------------------------------

function closeOnCancel(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
}

async function openJoin() {
  const dialog = $("join-dialog");
  $("join-status").textContent = "";
  $("join-status").className = "status";
  $("join-room").value = "";
  $("join-pass").value = "";
  $("join-switch").checked = false;
  $("join-switch").parentElement.classList.toggle("hidden", !(state.active && state.active.kind === "room"));
  $("room-directory").replaceChildren();
  dialog.showModal();
  $("join-room").focus();
  try {
    const reply = await state.conn.request("list_rooms");
    const others = reply.rooms.filter((r) => !state.rooms.has(fold(r)));
    if (others.length) {
      $("room-directory").replaceChildren(el("span", { class: "dir-title", text: "Rooms on this server" }),
        ...others.map((r) => el("button", { type: "button", onclick: () => { $("join-room").value = r; $("join-pass").focus(); } }, r)));
    }
  } catch (e) {
    // The directory is a convenience.
  }
}

async function submitJoin(event) {
  event.preventDefault();
  const name = $("join-room").value.trim();
  const password = $("join-pass").value;
  const status = $("join-status");
  if (!ROOM_RE.test(name)) {
    status.textContent = "Room names are 1–32 of A–Z a–z 0–9 _ . - (an optional # in front).";
    status.className = "status error";
    return;
  }
  const switching = $("join-switch").checked && state.active?.kind === "room";
  status.textContent = "Joining…";
  status.className = "status";
  $("join-submit").disabled = true;
  try {
    await joinRoom(name, password, switching ? state.active : null);
    $("join-dialog").close();
  } catch (e) {
    status.textContent = describeError(e);
    status.className = "status error";
  } finally {
    $("join-submit").disabled = false;
  }
}

async function joinRoom(name, password, switchFrom = null) {
  const fields = {};
  if (name !== null) fields.roomId = name;
  if (password) fields.password = password;
  let reply;
  try {
    reply = await state.conn.request(switchFrom ? "switch_room" : "join", fields);
  } catch (e) {
    if (e instanceof ServerError && e.code === "conflict" && /already/i.test(e.message)) {
      const known = name !== null && state.rooms.get(fold(name));
      if (known) {
        select(known);
        return known;
      }
      const room = addRoom(name ?? state.me);
      await refreshRoom(room);
      select(room);
      return room;
    }
    throw e;
  }
  const room = addRoom(reply.roomId);
  room.password = password || "";
  await setMembers(room, reply.members, false);
  if (switchFrom && fold(switchFrom.name) !== room.key) {
    removeRoom(switchFrom);
  }
  select(room);
  return room;
}

async function leaveRoom() {
  const room = state.active;
  if (!room || room.kind !== "room") return;
  try {
    await state.conn.request("leave", { roomId: room.name });
    removeRoom(room, `You left ${room.name}`);
  } catch (e) {
    toast(describeError(e), "error");
  }
}

async function openDmDialog() {
  const dialog = $("dm-dialog");
  $("dm-status").textContent = "";
  $("dm-user").value = "";
  $("user-directory").replaceChildren();
  dialog.showModal();
  $("dm-user").focus();
  try {
    const reply = await state.conn.request("list_users", {});
    const others = reply.users.filter((u) => fold(u) !== fold(state.me));
    if (others.length) {
      $("user-directory").replaceChildren(el("span", { class: "dir-title", text: "Online now" }),
        ...others.map((u) => el("button", { type: "button", onclick: () => { $("dm-user").value = u; } }, u)));
    }
  } catch (e) {
    // A convenience only.
  }
}

async function submitDm(event) {
  event.preventDefault();
  const name = $("dm-user").value.trim();
  const status = $("dm-status");
  if (!USER_RE.test(name)) {
    status.textContent = "User names are 1–32 of A–Z a–z 0–9 _ . -";
    status.className = "status error";
    return;
  }
  try {
    await openDm(name);
    $("dm-dialog").close();
  } catch (e) {
    status.textContent = describeError(e);
    status.className = "status error";
  }
}

async function openDm(name) {
  const existing = state.dms.get(fold(name));
  const conv = existing || new Conversation("dm", name);
  if (!existing) await refreshPeerKey(conv);
  state.dms.set(conv.key, conv);
  select(conv);
  return conv;
}

let verifying = null;

function openVerify(name) {
  const pin = state.pins.get(fold(name));
  if (!pin) return;
  verifying = name;
  $("verify-title").textContent = `Verify ${pin.name}`;
  $("verify-text").textContent = `Ask ${pin.name} to read out their fingerprint (in person or by phone). If it matches this one exactly, mark them verified.`;
  $("verify-fp").textContent = fingerprintLines(pin.fp);
  $("verify-dialog").showModal();
}

async function sendFile(file) {
  const conv = state.active;
  if (!conv || !file) return;
  try {
    await recipientsFor(conv);
  } catch (e) {
    toast(describeError(e), "error");
    return;
  }
  transfers.send(conv, file);
}

// -- signing in ---------------------------------------------------------------------

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function setConnStatus(text, cls) {
  const node = $("conn-status");
  node.textContent = text;
  node.className = `conn-status ${cls}`;
}

async function connect() {
  const conn = new Connection(wsUrl(), { onEvent: queueEvent, onClose: () => onDisconnect(conn) });
  setConnStatus("connecting", "connecting");
  await conn.open();
  state.conn = conn;
  setConnStatus("online", "online");
  return conn;
}

function loginStatus(text, error = false) {
  $("login-status").textContent = text;
  $("login-status").className = error ? "status error" : "status";
}

// Prove who we are with this browser's key: sign the server's challenge.
async function authenticateWithKey(name, identity) {
  const { challenge } = await state.conn.request("get_challenge");
  const signature = await e2e.signAuth(identity.pss, e2e.unb64(challenge), name);
  return state.conn.request("authenticate", { userId: name, signature: e2e.b64(signature) });
}

async function signIn(mode) {
  const name = $("login-user").value.trim();
  const password = $("login-pass").value;
  if (!USER_RE.test(name)) return loginStatus("User names are 1–32 of A–Z a–z 0–9 _ . -", true);
  if (password && new TextEncoder().encode(password).length < 8) return loginStatus("Passwords are at least 8 bytes (or leave it empty).", true);
  for (const button of [$("btn-login"), $("btn-register")]) button.disabled = true;
  let release = null;
  let replaced = null;
  try {
    if (!state.conn || !state.conn.isOpen) {
      loginStatus("Connecting…");
      await connect();
    }
    release = holdEvents();
    state.signedOut = false;
    let identity = await store.loadIdentity(name);
    let reply;
    if (mode === "register") {
      let fresh = false;
      if (!identity) {
        loginStatus("Making your key (RSA-3072)…");
        identity = await e2e.generateIdentity();
        fresh = true;
      }
      loginStatus("Creating your account…");
      const fields = { userId: name, publicKey: e2e.derToPem(identity.spki) };
      if (password) fields.password = password;
      reply = await state.conn.request("register", fields);
      if (fresh) await store.saveIdentity(reply.userId, identity);
    } else if (password) {
      loginStatus("Signing in…");
      reply = await state.conn.request("login", { userId: name, password });
    } else {
      if (!identity) throw new Error(`This browser has no key for ${name}. Enter your password, or create an account.`);
      loginStatus("Signing in with this browser's key…");
      reply = await authenticateWithKey(name, identity);
    }
    state.me = reply.userId;
    const keys = await state.conn.request("get_keys", { userId: state.me });
    const serverSpki = e2e.pemToDer(keys.members[0].publicKey);
    if (!identity) {
      // A password sign-in on a browser that has never seen this account: it
      // makes its own key and publishes it (contacts are warned of the change).
      // The events held meanwhile still name the key it replaces.
      loginStatus("Making a key for this browser (RSA-3072)…");
      identity = await e2e.generateIdentity();
      state.ownKey.setAside();
      replaced = serverSpki;
      await state.conn.request("set_key", { publicKey: e2e.derToPem(identity.spki) });
      await store.saveIdentity(state.me, identity);
      toast("This browser made a new key for your account; your contacts will see that it changed.");
    }
    state.identity = identity;
    state.ownKey.check(serverSpki, identity.spki);
    await state.replay.attach(state.me);
    $("login-pass").value = "";
    await enterApp();
  } catch (e) {
    state.me = null;
    loginStatus(describeError(e), true);
    if (e instanceof Disconnected) state.conn = null;
  } finally {
    release?.();
    if (replaced) state.events = state.events.then(() => state.ownKey.resume(replaced));
    for (const button of [$("btn-login"), $("btn-register")]) button.disabled = false;
  }
}

async function enterApp() {
  const pins = await store.loadPins(state.me);
  for (const [key, pin] of pins) {
    pin.fp = await fingerprintOf(pin.spki);
    state.pins.set(key, pin);
  }
  $("me-name").textContent = state.me;
  $("me-avatar").replaceWith(Object.assign(avatar(state.me), { id: "me-avatar" }));
  $("login-screen").classList.add("hidden");
  $("app-screen").classList.remove("hidden");
  renderSelfKey();
  // Rooms this browser was in before, which the server may not have kept.
  for (const name of await store.loadRooms(state.me)) {
    if (state.rooms.has(fold(name))) continue;
    try {
      await joinRoom(name, "");
    } catch (e) {
      store.forgetRoom(state.me, name).catch(() => {});
      toast(`Could not rejoin ${name}: ${describeError(e)}`, "error");
    }
  }
  renderAll();
  if (!state.active) {
    const first = state.rooms.values().next().value;
    if (first) select(first);
  }
  document.title = `chatd · ${state.me}`;
}

function onDisconnect(conn) {
  if (state.conn !== conn) return;
  setConnStatus("offline", "");
  if (state.signedOut || !state.me) {
    state.conn = null;
    return;
  }
  reconnect();
}

async function reconnect() {
  if (state.reconnecting) return;
  state.reconnecting = true;
  let delay = 1000;
  let release = null;
  for (let attempt = 0; attempt < 60 && !state.signedOut; attempt++) {
    setConnStatus(`reconnecting…`, "connecting");
    await new Promise((r) => setTimeout(r, delay));
    try {
      await connect();
      release = holdEvents();
      const reply = await authenticateWithKey(state.me, state.identity);
      state.me = reply.userId;
      for (const room of [...state.rooms.values()]) {
        try {
          const joined = await state.conn.request("join", { roomId: room.name, ...(room.password ? { password: room.password } : {}) });
          await setMembers(room, joined.members, true);
        } catch (e) {
          if (e instanceof ServerError && e.code === "conflict") await refreshRoom(room, false);
          else {
            removeRoom(room, `Could not rejoin ${room.name}: ${describeError(e)}`);
            continue;
          }
        }
        // Catch up on what was said meanwhile; ids already seen are skipped.
        room.historyState = "none";
        if (state.active === room) loadHistory(room);
      }
      for (const dm of state.dms.values()) dm.peerSpki && refreshPeerKey(dm).catch(() => {});
      toast("Reconnected");
      state.reconnecting = false;
      release();
      return;
    } catch (e) {
      release?.();
      release = null;
      console.warn("chatd: reconnecting", e);
      if (e instanceof ServerError && (e.code === "forbidden" || e.code === "not_found")) break;
      if (state.conn) state.conn.close();
      delay = Math.min(delay * 2, 30000);
    }
  }
  state.reconnecting = false;
  if (!state.signedOut) {
    toast("Could not reconnect. Sign in again.", "error");
    signOut();
  }
}

function signOut() {
  state.signedOut = true;
  const conn = state.conn;
  state.conn = null;
  conn?.close();
  for (const t of transfers.byId.values()) if (t.url) URL.revokeObjectURL(t.url);
  Object.assign(state, {
    me: null, identity: null, active: null, held: [], ownKey: newOwnKey(),
  });
  state.pins.clear();
  state.alerts.clear();
  state.rooms.clear();
  state.dms.clear();
  state.replay = new SeenEnvelopes();
  state.shown.clear();
  transfers.byId.clear();
  $("app-screen").classList.add("hidden");
  $("login-screen").classList.remove("hidden");
  loginStatus("");
  document.title = "chatd";
  $("login-user").focus();
}

// -- wiring -------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn("login");
  });
  $("btn-register").addEventListener("click", () => signIn("register"));
  $("btn-join-open").addEventListener("click", openJoin);
  $("btn-empty-join").addEventListener("click", openJoin);
  $("join-form").addEventListener("submit", submitJoin);
  $("btn-dm-open").addEventListener("click", openDmDialog);
  $("dm-form").addEventListener("submit", submitDm);
  $("btn-own-room").addEventListener("click", () => joinRoom(null, "").catch((e) => toast(describeError(e), "error")));
  $("btn-leave").addEventListener("click", leaveRoom);
  $("btn-logout").addEventListener("click", signOut);
  $("btn-members").addEventListener("click", () => $("members-panel").classList.toggle("hidden"));
  $("btn-members-close").addEventListener("click", () => $("members-panel").classList.add("hidden"));
  $("verify-ok").addEventListener("click", async () => {
    if (verifying) await markVerified(verifying);
    verifying = null;
    $("verify-dialog").close();
  });
  $("btn-me").addEventListener("click", async () => {
    $("me-fp").textContent = fingerprintLines(await fingerprintOf(state.identity.spki));
    $("me-key-note").textContent = "Kept in this browser's IndexedDB as a non-extractable key.";
    $("me-dialog").showModal();
  });
  for (const dialog of document.querySelectorAll("dialog")) closeOnCancel(dialog);

  const input = $("composer-input");
  const grow = () => {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
  };
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim() || !state.active) return;
    input.value = "";
    grow();
    sendText(state.active, text);
  });
  $("btn-file").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    $("file-input").value = "";
    sendFile(file);
  });
  renderAll();
}

wire();
