// The envelopes this browser has seen, kept in IndexedDB with the account's
// key so that a server cannot show an old envelope again after the page is
// loaded anew. The rule is the terminal client's (chatd/client/replay.py):
//
// - the last SEEN_IDS envelopes (sender and id, with their signed time)
//   received live, or sent, are remembered; one seen again is a replay;
// - when one is forgotten to make room, its signed time raises a horizon, and
//   a live envelope signed more than SKEW_MS before the horizon is a replay
//   too (it is older than anything still remembered; the slack is twice the
//   5 minutes a server allows a sender's clock, so that an honest message
//   never falls below it);
// - a signed time counts as at most the browser's own clock, so that one
//   envelope dated in the future cannot raise the horizon over honest ones;
// - but a message that repeats, identical, one this page has shown (live or
//   from history) or sent, and is not older than the horizon, is no replay:
//   it is dropped without a word. That is its sender's retry: a server that
//   delivers before it commits may have shown the members a message whose
//   commit then failed, and the sender sends the same envelope again
//   (docs/protocol.rst, "What an acknowledgement promises"). Identical means
//   the same signedDigest: the bytes the signature covers (the header, built
//   from the parsed values, and the ciphertext) and the signature; not the
//   bytes received, which the server writes anew for each reader, with key
//   maps no signature covers. The same sender and id with other content
//   (another signature: a sender that signed two messages under one id, or a
//   server that mixed them up) is still a replay, and said; so is an id this
//   page cannot compare (one remembered from an earlier page: IndexedDB
//   keeps no digest), and a file offer (each is a transfer of its own,
//   declined either way). The digests are the page's (state.shown), never
//   stored.

import * as e2e from "./crypto.js";
import * as store from "./store.js";

export const SEEN_IDS = 4096;
export const SKEW_MS = 600000;

const fold = store.fold;

export class SeenEnvelopes {
  constructor(window = SEEN_IDS) {
    this.window = window;
    this.seen = new Map(); // fold(sender) + "\n" + id -> { sender, id, ts, n }, oldest first
    this.horizon = 0;
    this.owner = null;
    this.next = 1;
  }

  // Why a live envelope is a replay, or null when it is not.
  replayed(sender, id, ts) {
    if (this.seen.has(`${fold(sender)}\n${id}`)) return "it repeats a message already received";
    if (this.older(ts)) return "it is signed earlier than every message this browser still remembers";
    return null;
  }

  // Whether an envelope signed at `ts` is older than every one still
  // remembered (signed more than SKEW_MS before the horizon).
  older(ts) {
    return ts < this.horizon - SKEW_MS;
  }

  // Remember an envelope shown (or sent), signed at `ts`, at time `now` (ms).
  remember(sender, id, ts, now = Date.now()) {
    const entry = { sender: fold(sender), id, ts: Math.min(ts, now), n: this.next++ };
    const forgotten = this.add(entry);
    if (!forgotten) return;
    if (this.owner) {
      store.saveSeen(this.owner, entry, forgotten, this.horizon)
        .catch((e) => console.error("chatd: keeping seen envelopes", e));
    }
  }

  // Returns the entries forgotten to make room, or null when `entry` was
  // known already.
  add(entry) {
    const key = `${entry.sender}\n${entry.id}`;
    if (this.seen.has(key)) return null;
    this.seen.set(key, entry);
    const forgotten = [];
    for (const [oldKey, old] of this.seen) {
      if (this.seen.size <= this.window) break;
      this.seen.delete(oldKey);
      this.horizon = Math.max(this.horizon, old.ts);
      forgotten.push(old);
    }
    return forgotten;
  }

  // Keep this window with `owner`'s account from now on: what IndexedDB
  // holds comes first, then what was seen before.
  async attach(owner) {
    const earlier = [...this.seen.values()];
    const { entries, horizon } = await store.loadSeen(owner);
    this.seen = new Map();
    this.horizon = Math.max(this.horizon, horizon);
    entries.sort((a, b) => a.n - b.n);
    const forgotten = [];
    for (const entry of entries) forgotten.push(...(this.add(entry) || []));
    this.next = entries.reduce((n, e) => Math.max(n, e.n + 1), this.next);
    this.owner = owner;
    for (const entry of earlier) {
      entry.n = this.next++;
      const dropped = this.add(entry);
      if (dropped) await store.saveSeen(owner, entry, dropped, this.horizon);
    }
    if (forgotten.length) await store.saveSeen(owner, null, forgotten, this.horizon);
  }
}

// What tells a sender's retry from another envelope under the same id: the
// SHA-256 of the bytes its signature covers (for `domain`) and of the
// signature, as chatd/client/replay.py's signedDigest computes it.
export async function signedDigest(env, domain = e2e.MESSAGE) {
  const signed = e2e.concat(e2e.header(domain, env), e2e.utf8(env.encrypted_message));
  return e2e.b64(await e2e.sha256(e2e.concat(signed, e2e.utf8(`\n${env.signature}`))));
}
