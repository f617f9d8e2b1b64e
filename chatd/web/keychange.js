// The block a changed key raises over a conversation: the pinned and the new
// fingerprint side by side, and a check that the person compared them with
// the other person: accepting takes typing the new fingerprint's last
// characters (as the terminal client's /trust NAME ABCD does), not one click.

import { $, el, fingerprintLines } from "./dom.js";
import { fold, state } from "./state.js";
import { CONFIRM_CHARS, rejectNewKey, trustNewKey } from "./trust.js";

export function renderAlerts() {
  const box = $("key-alerts");
  const focused = document.activeElement?.closest?.(".key-alert")?.dataset.user;
  box.replaceChildren();
  const conv = state.active;
  if (!conv) return;
  const names = conv.kind === "dm" ? [conv.key] : [...conv.members.keys()];
  for (const key of names) {
    const alert = state.alerts.get(key);
    if (alert) box.append(keyAlert(alert));
  }
  if (focused) focusKeyAlert(focused);
}

function keyAlert(alert) {
  const name = alert.name;
  const input = el("input", {
    class: "confirm-fp", maxlength: String(CONFIRM_CHARS), autocomplete: "off", spellcheck: "false",
    autocapitalize: "off", "aria-label": `Last ${CONFIRM_CHARS} characters of ${name}'s new fingerprint`,
  });
  input.value = alert.typed || "";
  const status = el("p", { class: "confirm-status", role: "status" });
  const trust = el("button", { type: "button", class: "trust", disabled: input.value.length < CONFIRM_CHARS },
    `Trust ${name}'s new key`);
  input.addEventListener("input", () => {
    alert.typed = input.value;
    trust.disabled = input.value.trim().length < CONFIRM_CHARS;
    status.textContent = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !trust.disabled) trust.click();
  });
  trust.addEventListener("click", async () => {
    if (!(await trustNewKey(name, input.value))) {
      status.textContent = `That is not how ${name}'s new fingerprint ends. Compare it again with ${name}; if it does not match, do not trust it.`;
      status.className = "confirm-status error";
    }
  });
  const fingerprints = el("div", { class: "fp-compare" },
    el("figure", { class: "fp-old" }, el("figcaption", { text: "Pinned (the key you knew)" }),
      el("pre", { class: "fingerprint", text: fingerprintLines(alert.oldFp, 4) })),
    el("figure", { class: "fp-new" }, el("figcaption", { text: "New (what the server gives now)" }),
      el("pre", { class: "fingerprint", text: fingerprintLines(alert.fp, 4) })));
  const explain = alert.rejected
    ? `You rejected this key: what is signed with it is dropped and nothing is sent to ${name}. If ${name} confirms it after all, type the end of the new fingerprint to trust it.`
    : `The server now gives a different key for ${name}. This happens when they sign in from a new browser — or when someone is impersonating them. Nothing is sent to ${name}, and their new messages are held, until you compare the new fingerprint with ${name} over another channel (in person, by phone).`;
  return el("div", { class: alert.rejected ? "alert key-alert rejected" : "alert key-alert", role: "alert", dataset: { user: name } },
    el("h3", { text: `⚠ ${name}'s key has changed` }),
    el("p", { text: explain }),
    fingerprints,
    el("label", { class: "confirm-label" },
      `Ask ${name} to read out the end of their fingerprint, and type its last ${CONFIRM_CHARS} characters:`, input),
    status,
    el("div", { class: "alert-actions" }, trust,
      alert.rejected ? null : el("button", { type: "button", class: "reject", onclick: () => rejectNewKey(name) }, "It does not match: reject it")));
}

// Bring `name`'s key-change block into view, ready to type in.
export function focusKeyAlert(name) {
  const block = [...$("key-alerts").querySelectorAll(".key-alert")].find((b) => fold(b.dataset.user) === fold(name));
  if (!block) return;
  block.scrollIntoView({ block: "nearest" });
  block.querySelector("input.confirm-fp").focus({ preventScroll: true });
}
