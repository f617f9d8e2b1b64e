// Devices on the page: the panel a new device shows while it waits for
// approval (its /approve line, recovery, reset), the recovery code shown once,
// "Approve a device" on the device holding the identity key, the list of
// one's devices (with removal), and the device events.

import * as e2e from "./crypto.js";
import * as devices from "./devices.js";
import { ServerError } from "./connection.js";
import { acceptApproval, isIdentityDevice, nextList, publish, publishList, recover, resetIdentity } from "./devicesession.js";
import { observeList } from "./devicetrust.js";
import { $, describeError, el, fingerprintLines, toast } from "./dom.js";
import { onEvent, on } from "./events.js";
import { finishSignIn, signOut } from "./session.js";
import { fingerprintOf, fold, state } from "./state.js";

// -- a new device, waiting ------------------------------------------------------

export function showPending(code) {
  $("login-form").classList.add("hidden");
  $("pending-panel").classList.remove("hidden");
  $("pending-code").textContent = `/approve ${code}`;
  pendingStatus("Waiting for approval…");
}

export function hidePending() {
  $("pending-panel").classList.add("hidden");
  $("login-form").classList.remove("hidden");
  $("recover-code").value = "";
}

function pendingStatus(text, error = false) {
  $("pending-status").textContent = text;
  $("pending-status").className = error ? "status error" : "status";
}

// A list the server published while this device waited: once it names this
// device (the server approved it) and the reply has verified, go on. The
// list is only the server's word here; it is checked with the identity key
// from the reply when the events that waited are handled.
export async function pendingListed(message) {
  const { identity } = state.pending;
  if (fold(message.userId) !== fold(state.me)) return;
  const names = (d) => d.id === identity.device && e2e.equalBytes(e2e.pemToDer(d.publicKey), identity.spki);
  if (!(message.list?.devices || []).some(names)) return;
  state.pending.listed = true;
  if (state.pending.approval) await approved(state.pending.approval);
}

// Go on as an approved device: what the server sent while this one waited
// is handled now, in order.
async function approved(identity) {
  const waiting = state.pending.events;
  state.pending = null;
  hidePending();
  await finishSignIn(identity);
  for (const message of waiting) await onEvent(message);
}

async function onApproval(message) {
  if (!state.pending) return;
  let identity;
  try {
    identity = await acceptApproval(message.reply);
  } catch (e) {
    // Never used: the server (or someone without the code) made it up.
    pendingStatus(`An approval was refused: ${describeError(e)}. Still waiting for your device.`, true);
    console.warn("chatd: approval refused", e);
    return;
  }
  state.pending.approval = identity;
  if (state.pending.listed) await approved(identity);
  else pendingStatus("Approved: waiting for the server to list this browser…");
}

async function onRecover(event) {
  event.preventDefault();
  const code = devices.normaliseCode($("recover-code").value, devices.RECOVERY_CHARS);
  if (!code) return pendingStatus(`A recovery code is ${devices.RECOVERY_CHARS} characters of A–Z and 2–7.`, true);
  pendingStatus("Recovering…");
  try {
    await approved(await recover(code));
  } catch (e) {
    pendingStatus(describeError(e), true);
  }
}

async function onReset() {
  pendingStatus("Making a new identity key (RSA-3072)…");
  try {
    await approved(await resetIdentity());
    toast("Your identity was reset: your contacts are told your key changed.");
  } catch (e) {
    pendingStatus(describeError(e), true);
  }
}

export function showRecoveryCode(code) {
  $("recovery-code").textContent = devices.formatCode(code);
  $("recovery-dialog").showModal();
}

// -- approving and removing, on the identity device ----------------------------

// Our own list as the server has it now, verified: [{ id, spki }] and the head.
async function ownDevices() {
  const reply = await state.conn.request("get_devices", { userId: state.me });
  const held = await observeList(state.me, reply.list, true);
  if (!held || held.legacy) throw new Error("your device list could not be verified");
  return { held, pending: reply.pending || [] };
}

// Approve the pending device whose tag `typed` verifies: the new list is
// signed and published, then the reply goes to the new device.
export async function approveDevice(typed) {
  const code = devices.normaliseCode(typed);
  if (!code) throw new Error(`An approval code is ${devices.APPROVAL_CHARS} characters of A–Z and 2–7 (dashes allowed).`);
  const { held, pending } = await ownDevices();
  let found = null;
  for (const p of pending) {
    const spki = e2e.pemToDer(p.publicKey);
    if (await devices.tagMatches(code, state.me, spki, e2e.unb64(p.tag))) {
      found = { id: p.id, spki };
      break;
    }
  }
  if (!found) throw new Error("No device waiting for approval has that code (it expires after 10 minutes).");
  const mine = [...held.devices.filter((d) => d.id !== found.id), found];
  const fp = await fingerprintOf(found.spki);
  $("approve-result").textContent = `Device ${found.id}\n${fingerprintLines(fp)}\n\nNew list: ${mine.map((d) => d.id).join(", ")}`;
  const devicesNow = mine.map((d) => ({ id: d.id, spki: d.spki }));
  const next = await nextList(devicesNow, held.head);
  const pins = [...state.pins.values()].map((p) => ({ user: p.name, spki: p.spki }));
  const reply = await devices.sealReply(code, {
    user: state.me, device: found.id, deviceKey: found.spki, ik: state.ikSpki,
    list: { text: next.text, signature: next.signature, devices: devicesNow }, pins,
  });
  // The new device goes on once it has both the reply and a published list
  // naming it, in either order: the reply goes first while it waits, or
  // after the list when the server relays only to listed devices.
  const approve = () => state.conn.request("approve", { device: found.id, reply: e2e.b64(reply) });
  let sent = true;
  await approve().catch((e) => {
    if (!(e instanceof ServerError) || e.code !== "not_found") throw e;
    sent = false;
  });
  await publish(next);
  if (!sent) await approve();
  toast(`Approved ${found.id}`);
  return found;
}

async function submitApprove(event) {
  event.preventDefault();
  const status = $("approve-status");
  status.className = "status";
  status.textContent = "Checking the code…";
  $("approve-submit").disabled = true;
  try {
    const found = await approveDevice($("approve-code").value);
    status.textContent = `Approved ${found.id}.`;
    $("approve-code").value = "";
  } catch (e) {
    status.textContent = describeError(e);
    status.className = "status error";
  } finally {
    $("approve-submit").disabled = false;
  }
}

export async function removeDevice(id) {
  const { held } = await ownDevices();
  const mine = held.devices.filter((d) => d.id !== id);
  if (mine.length === held.devices.length) return;
  await publishList(mine.map((d) => ({ id: d.id, spki: d.spki })), held.head);
  toast(`Removed ${id}`);
}

// The "Your key" dialog's device list.
export async function renderDevices() {
  const list = $("device-list");
  const own = state.deviceLists.get(fold(state.me));
  list.replaceChildren();
  if (!own || own.legacy) {
    list.append(el("li", { text: "This account has one device: this browser." }));
    return;
  }
  const removable = isIdentityDevice();
  for (const d of own.devices) {
    const self = d.id === state.device;
    const remove = !self && removable ? el("button", {
      type: "button", class: "link-btn danger", onclick: async () => {
        try {
          await removeDevice(d.id);
          renderDevices();
        } catch (e) {
          $("device-status").textContent = describeError(e);
        }
      },
    }, `Remove ${d.id}`) : null;
    list.append(el("li", { dataset: { device: d.id } },
      el("span", { class: "name", text: d.id }),
      self ? el("span", { class: "tag you", text: "this browser" }) : null,
      d.spki && state.ikSpki && e2e.equalBytes(d.spki, state.ikSpki) ? el("span", { class: "tag verified", text: "identity" }) : null,
      remove,
      el("pre", { class: "fingerprint", text: fingerprintLines(await fingerprintOf(d.spki)) })));
  }
}

export function renderDeviceButtons() {
  $("btn-approve-open").classList.toggle("hidden", !isIdentityDevice());
}

// -- events -------------------------------------------------------------------

export function wireDevices() {
  $("recover-form").addEventListener("submit", onRecover);
  $("btn-reset-identity").addEventListener("click", onReset);
  $("btn-pending-cancel").addEventListener("click", signOut);
  $("btn-approve-open").addEventListener("click", () => {
    $("approve-status").textContent = "";
    $("approve-result").textContent = "";
    $("approve-dialog").showModal();
    $("approve-code").focus();
  });
  $("approve-form").addEventListener("submit", submitApprove);
  // "/approve CODE" in the composer, as in the terminal client; registered
  // before the composer's own handler, so it is never sent as a message.
  $("composer").addEventListener("submit", (event) => {
    const input = $("composer-input");
    const typed = /^\/approve\s+(\S+)\s*$/.exec(input.value);
    if (!typed) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    input.value = "";
    approveDevice(typed[1]).catch((e) => toast(describeError(e), "error"));
  });
  $("btn-me").addEventListener("click", () => renderDevices().catch((e) => console.error(e)));
  on("approval", onApproval);
  on("device_pending", async (m) => {
    const fp = await fingerprintOf(e2e.pemToDer(m.publicKey));
    const text = `A new device "${m.id}" (${fp.split(" ").slice(0, 4).join(" ")} …) is waiting for approval.`;
    toast(isIdentityDevice() ? `${text} Approve it with its code.` : text);
  });
  on("devices_changed", async (m) => {
    await observeList(m.userId, m.list);
    if (fold(m.userId) === fold(state.me)) renderDeviceButtons();
  });
  on("caught_up", () => {
    state.catchingUp = false;
  });
}
