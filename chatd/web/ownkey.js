// Our own key is ours: the server's word about it is checked, never used
// (the same rule as the terminal client's chatd/client/ownkey.py).
//
// The page seals its own entry of every envelope with this browser's key and
// checks its own signatures with it; the key the server gives for our name is
// only compared with it. A server that lists us with another key (a join
// answer, a member list, user_joined, key_changed, get_keys, a
// stale_recipients list) is lying, or someone with our password published
// another key: whoever holds it could read what is sent to us, so the page
// warns loudly and sends nothing until the person publishes this browser's
// key again.
//
// One exception is the person's own act of publishing this browser's key:
// until the server has it, it still names the key being replaced, so what it
// says meanwhile is set aside and checked once the key is published.

import { equalBytes } from "./crypto.js";

export class OwnKey {
  // warn(claimed): called once for each different key the server claims.
  constructor(warn) {
    this.warn = warn;
    this.conflict = null; // the key the server claimed that is not ours
    this.setAsideClaims = null;
  }

  // The server says our name has key `claimed`; `ours` is this browser's key
  // (null while there is none, which leaves nothing to compare).
  check(claimed, ours) {
    if (!ours || equalBytes(claimed, ours)) return;
    if (this.setAsideClaims) {
      this.setAsideClaims.push([claimed, ours]);
      return;
    }
    if (this.conflict && equalBytes(this.conflict, claimed)) return;
    this.conflict = claimed;
    this.warn(claimed);
  }

  setAside() {
    this.setAsideClaims = [];
  }

  // Check what was set aside, except claims of the key that was replaced.
  resume(replaced = null) {
    const claims = this.setAsideClaims || [];
    this.setAsideClaims = null;
    for (const [claimed, ours] of claims) {
      if (!replaced || !equalBytes(claimed, replaced)) this.check(claimed, ours);
    }
  }

  // The person published this browser's key: the server's view is ours again.
  clear() {
    this.conflict = null;
  }
}
