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
//   envelope dated in the future cannot raise the horizon over honest ones.

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
    if (ts < this.horizon - SKEW_MS) return "it is signed earlier than every message this browser still remembers";
    return null;
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
