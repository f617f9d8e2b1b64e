// Messages in and out. Received envelopes are checked (shape, addressing,
// replay, the sender's pinned key) one at a time, in order, before they are
// shown; sent ones are sealed for exactly the members the server lists and
// sealed again when it says the list is stale, or sent again as they are when
// it could not store them.

import * as e2e from "./crypto.js";
import { Disconnected, ServerError } from "./connection.js";
import { addItem, refreshPeerKey, setMembers, systemNote } from "./conversations.js";
import { $, describeError, parseTime, toast } from "./dom.js";
import { renderComposer, renderMessages } from "./render.js";
import { fingerprintOf, fold, shownKey, state } from "./state.js";
import { observeMember, ownEntry, readerFor, readersOf, sendingDevice, signingKey } from "./devicetrust.js";
import { signedDigest } from "./replay.js";
import { shareRanks, shareRefusal } from "./sharing.js";
import { checkOwnKey, observeKey, senderKey } from "./trust.js";

export const HISTORY_PAGE = 50;
export const SEND_ATTEMPTS = 4;
// The pauses (seconds) before each resend of a message the server could not
// store: the terminal client's too (docs/client.rst, "Sending").
export const RESEND_PAUSES = [1, 2, 4];

// -- receiving ----------------------------------------------------------------

export function queueIncoming(job) {
  state.incoming = state.incoming.then(() => receive(job)).catch((e) => console.error("chatd: receiving", e));
  return state.incoming;
}

// Say that a message was dropped, and why; returns the outcome, with the
// reason in the shared test vectors' words (chatd/test/vectors/clients.json).
export function dropped(conv, sender, why, live, reason) {
  console.warn(`chatd: dropped a message from ${sender}: ${why}`);
  if (conv) systemNote(conv, `A message from ${sender} was dropped: ${why}.`, true);
  else if (live) toast(`A message from ${sender} was dropped: ${why}`, "error");
  return { outcome: "drop", reason };
}

// A message shared with us as history that fails a check: a loud line, never
// its text.
function refusedShare(conv, sender, why) {
  console.warn(`chatd: refused a message from ${sender} shared as history: ${why}`);
  systemNote(conv, `A message from ${sender} shared with you as history was refused: ${why}.`, true);
  return { outcome: "drop", reason: "share" };
}

// Open one envelope and show it, hold it or drop it, in the order of the
// shared rules: its shape, where it was sent, replays, the signature (before
// anything is decrypted), then the decryption. `job`: { conv, sender,
// envelope, history, retry, shareRank }; `shareRank`, for history shared
// with us (sharing.js), is how many shared rows are newer: such a message
// must also pass shareRefusal, checked once its signature is. Returns the
// outcome: { outcome: "show", sender, text, ts }, { outcome: "hold" } or
// { outcome: "drop", reason }, or null for history this page has already
// shown or cannot read.
export async function receive(job) {
  const { conv, sender, envelope, history } = job;
  const live = !history;
  let env;
  try {
    env = e2e.checkEnvelope(envelope);
  } catch (e) {
    return dropped(conv, sender, "it is malformed", live, "malformed");
  }
  if (env.from !== sender) return dropped(conv, sender, "its sender does not match", live, "binding");
  const shared = history && Number.isInteger(job.shareRank);
  const [[toKind, toName]] = Object.entries(env.to);
  if (conv.kind === "room") {
    if (toKind !== "room" || fold(toName) !== conv.key) {
      return shared ? refusedShare(conv, sender, shareRefusal(conv, env, 0))
        : dropped(conv, sender, "it was sent to another room", live, "binding");
    }
  } else {
    const peer = fold(sender) === fold(state.me) ? conv.key : fold(state.me);
    if (toKind !== "user" || fold(toName) !== peer) return dropped(conv, sender, "it was sent to someone else", live, "binding");
  }
  // History is the server's record: shown once per page. What comes live
  // must be new to this account (replay.js), across page loads too.
  const seenKey = shownKey(env);
  if (history && state.shown.has(seenKey)) return null;
  // A message this page showed or sent, come again identical (its sender's
  // retry, replay.js): nothing new, dropped without a word.
  const digest = await signedDigest(env);
  const same = state.shown.has(seenKey) ? state.shown.get(seenKey) === digest : null;
  if (same && !state.replay.older(env.ts)) return null;
  // A device catching up may be sent again what it showed before the server
  // last marked it (on an earlier page, which kept no digest): dropped
  // without a word.
  if (state.catchingUp && same === null && state.replay.seen.has(`${fold(env.from)}\n${env.id}`)) return null;
  const replayed = state.shown.has(seenKey) ? "it repeats a message already received"
    : history ? null : state.replay.replayed(env.from, env.id, env.ts);
  if (replayed) return dropped(conv, sender, replayed, true, "replay");
  if (history && !(await sealedForThisBrowser(env))) {
    // Sealed for a key of ours this browser does not hold: said once per page.
    conv.unreadable = (conv.unreadable || 0) + 1;
    return null;
  }
  // While the person has not decided on the sender's new key, what comes
  // from the sender waits (history signed with the pinned key excepted).
  const alert = fold(sender) === fold(state.me) ? null : state.alerts.get(fold(sender));
  const pending = alert && !alert.rejected;
  if (pending && live) return hold(job);
  // The signature is checked before anything is decrypted: what a key we do
  // not trust wrote is never opened. Our own messages are checked with this
  // browser's key (senderKey), never with the key the server gives for us.
  const spki = await signingKey(sender, env, await senderKey(sender, conv));
  if (!spki || !(await e2e.verifySignature(env, spki))) {
    if (pending) return hold(job);
    return alert ? dropped(conv, sender, "it is signed with the new key you rejected", live, "rejected-key")
      : dropped(conv, sender, "its signature does not match the sender's pinned key", live, "signature");
  }
  const refusal = shared && shareRefusal(conv, env, job.shareRank);
  if (refusal) return refusedShare(conv, sender, refusal);
  let plaintext;
  try {
    plaintext = await e2e.decrypt(env, readerFor(env), state.identity.oaep);
  } catch (e) {
    return dropped(conv, sender, e.message.replace(/^envelope: /, ""), live, e.reason);
  }
  if (state.shown.has(seenKey)) return null;
  state.shown.set(seenKey, digest);
  if (live) state.replay.remember(env.from, env.id, env.ts);
  let text;
  try {
    text = e2e.fromUtf8(plaintext);
  } catch (e) {
    text = new TextDecoder().decode(plaintext);
  }
  // The time shown is the one the sender signed; the server's is only its word.
  addItem(conv, { type: "msg", id: env.id, from: env.from, text, time: env.ts, history, guest: state.guests.has(fold(sender)) });
  return { outcome: "show", sender: env.from, text, ts: env.ts };
}

// Keep a message from a sender whose key changed until the person accepts
// the new key (trust.js releases it) or rejects it (trust.js drops it).
function hold(job) {
  state.held.push({ ...job, retry: true });
  if (!job.retry) systemNote(job.conv, `A message from ${job.sender} is held until you check ${job.sender}'s new key.`, true);
  return { outcome: "hold" };
}

// Whether `env` has an entry for this browser's key (by its key id; nothing
// is decrypted).
async function sealedForThisBrowser(env) {
  const entry = readerFor(env);
  const own = Object.prototype.hasOwnProperty.call(env.key_ids, entry) ? env.key_ids[entry] : null;
  return own === (await e2e.keyId(state.identity.spki));
}

export async function loadHistory(room, older = false) {
  if (room.historyState === "loading") return;
  const previous = room.historyState;
  room.historyState = "loading";
  renderMessages();
  // A direct conversation's history is asked for as "@user".
  const fields = { roomId: room.kind === "dm" ? `@${room.name}` : room.name, limit: HISTORY_PAGE };
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
    const shares = shareRanks(room, rows, older ? room.sharesNewer : 0);
    room.sharesNewer = shares.newer;
    const jobs = rows.map((row, i) => queueIncoming({
      conv: room, sender: row.userId, envelope: row.envelope, history: true,
      shareRank: shares.ranks[i],
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

export class Blocked extends Error {
  constructor(names) {
    super(`Sending is blocked: the key of ${names.join(", ")} changed and is not verified yet.`);
    this.names = names;
  }
}

export class OwnKeyBlocked extends Error {
  constructor() {
    super("Sending is blocked: the server gives another key for you; the server, or someone with your password, changed your key.");
  }
}

// Who a message to `conv` is sealed for: every device of every member that a
// list signed by the member's pinned identity key names (devicetrust.js), or
// the member's pinned key for an account without devices. Our own entry is
// always sealed with this browser's key, whatever the server says ours is.
export async function recipientsFor(conv) {
  if (state.ownKey.conflict) throw new OwnKeyBlocked();
  const recipients = new Map();
  const blocked = [];
  if (conv.kind === "room") {
    for (const m of conv.members.values()) {
      if (fold(m.name) === fold(state.me)) continue;
      await observeKey(m.name, m.spki, m.guest);
      if (state.alerts.has(fold(m.name))) blocked.push(m.name);
      for (const [entry, spki] of readersOf(m.name, m.spki)) recipients.set(entry, spki);
    }
  } else {
    if (!conv.peerSpki) await refreshPeerKey(conv);
    await observeKey(conv.name, conv.peerSpki, state.guests.has(conv.key));
    if (state.alerts.has(conv.key)) blocked.push(conv.name);
    if (conv.key !== fold(state.me)) for (const [entry, spki] of readersOf(conv.name, conv.peerSpki)) recipients.set(entry, spki);
  }
  // Our other devices read what we send too.
  for (const [entry, spki] of readersOf(state.me, state.ikSpki ?? state.identity.spki)) recipients.set(entry, spki);
  recipients.set(ownEntry(), state.identity.spki);
  if (state.ownKey.conflict) throw new OwnKeyBlocked();
  if (blocked.length) throw new Blocked(blocked);
  return recipients;
}

// Seal `plaintext` for the conversation's members and hand it to `send`; when
// the server answers stale_recipients, take its member list (pinning and
// warning as usual) and seal again for it. `sealed`, when given, is sent
// first instead of a new envelope: one the server could not store, which the
// members may have already.
export async function sealAndSend(conv, plaintext, domain, send, sealed = null) {
  for (let attempt = 1; ; attempt++) {
    let env = sealed;
    sealed = null;
    if (!env) {
      const recipients = await recipientsFor(conv);
      const to = conv.kind === "room" ? ["room", conv.name] : ["user", conv.name];
      const hist = conv.kind === "room" ? conv.historySetting || 0 : 0;
      const device = state.device ? sendingDevice(hist) : undefined;
      env = await e2e.seal({ from: state.me, signingKey: state.identity.pss, to, recipients, plaintext, domain, device });
    }
    try {
      const reply = await send(env);
      // Our own envelope, seen again from the server, is a replay (or,
      // identical, nothing new: replay.js).
      state.shown.set(shownKey(env), await signedDigest(env, domain));
      state.replay.remember(env.from, env.id, env.ts);
      return { env, reply };
    } catch (e) {
      if (!(e instanceof ServerError) || e.code !== "stale_recipients" || attempt >= SEND_ATTEMPTS) throw e;
      await applyStaleMembers(conv, e.reply.members || []);
    }
  }
}

export async function applyStaleMembers(conv, members) {
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
    await observeMember(m.userId, spki, m.guest === true, m.devices);
  }
}

// Messages go out one at a time, in the order they were written; one refused
// for the rate limit waits as long as the server says and is tried again.
export function sendText(conv, text, item = null) {
  if (!item) {
    item = { type: "msg", from: state.me, text, time: Date.now(), pending: true };
    addItem(conv, item);
  }
  state.outgoing = state.outgoing.then(() => sendNow(conv, item)).catch((e) => console.error("chatd: sending", e));
}

export async function sendNow(conv, item) {
  const plaintext = e2e.utf8(item.text);
  const request = (envelope) => conv.kind === "room"
    ? state.conn.request("chat_message", { roomId: conv.name, envelope })
    : state.conn.request("dm", { to: conv.name, envelope });
  for (let attempt = 1; ; attempt++) {
    try {
      const { env } = await sealAndSend(conv, plaintext, e2e.MESSAGE,
        (envelope) => sendUntilStored(conv, item, envelope, request), item.unstored ? item.sealed : null);
      item.id = env.id;
      item.sealed = null;
      item.unstored = false;
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
        : e instanceof OwnKeyBlocked ? "not sent: the server changed your key"
        : e instanceof Disconnected ? `perhaps not sent: ${describeError(e)}` : `not sent: ${describeError(e)}`;
      if (state.active === conv) renderMessages();
      if (!(e instanceof Blocked) && !(e instanceof OwnKeyBlocked) && !(e instanceof ServerError)) toast(describeError(e), "error");
      renderComposer();
      return;
    }
  }
}

// Send `env` (for `item`) until the server stores it: after an `unavailable`
// answer the members may have it already (docs/protocol.rst, "What an
// acknowledgement promises"), so the same envelope goes again, never a new
// one, after RESEND_PAUSES; they drop the identical repeat. The item keeps
// the envelope and whether it met `unavailable` or no answer at all (the
// connection lost: `unstored`), for the person's "retry" once reconnected;
// once it has, a `conflict` (replayed id) means it was stored after all.
async function sendUntilStored(conv, item, env, request) {
  if (item.sealed !== env) {
    item.sealed = env;
    item.unstored = false;
  }
  for (let resent = 0; ; resent++) {
    try {
      return await request(env);
    } catch (e) {
      if (e instanceof Disconnected) item.unstored = true;
      if (!(e instanceof ServerError)) throw e;
      if (item.unstored && e.code === "conflict") return null;
      if (e.code !== "unavailable") throw e;
      item.unstored = true;
      if (resent >= RESEND_PAUSES.length) throw e;
    }
    item.waiting = "the server could not store it: sending it again";
    if (state.active === conv) renderMessages();
    await new Promise((resolve) => setTimeout(resolve, RESEND_PAUSES[resent] * 1000));
  }
}

// The person's "retry": a message that met `unavailable` or no answer goes
// again as it was sealed (sendUntilStored); any other is sealed anew.
export function retrySend(conv, item) {
  item.failed = null;
  item.pending = true;
  if (state.active === conv) renderMessages();
  sendText(conv, item.text, item);
}
