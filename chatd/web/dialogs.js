// The dialogs: joining a room, starting a direct message, verifying a
// fingerprint, one's own key.

import { joinRoom, openDm } from "./conversations.js";
import { $, closeOnCancel, describeError, el, fingerprintLines } from "./dom.js";
import { fingerprintOf, fold, ROOM_RE, state, USER_RE } from "./state.js";
import { markVerified } from "./trust.js";

export async function openJoin() {
  const dialog = $("join-dialog");
  $("join-status").textContent = "";
  $("join-status").className = "status";
  $("join-room").value = "";
  $("join-pass").value = "";
  $("join-history").value = "0";
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

export async function submitJoin(event) {
  event.preventDefault();
  const name = $("join-room").value.trim();
  const password = $("join-pass").value;
  const history = Number($("join-history").value || 0);
  const status = $("join-status");
  if (!ROOM_RE.test(name)) {
    status.textContent = "Room names are 1–32 of A–Z a–z 0–9 _ . - (an optional # in front).";
    status.className = "status error";
    return;
  }
  if (!Number.isInteger(history) || history < 0 || history > 500) {
    status.textContent = "New members may read 0 to 500 of the latest messages.";
    status.className = "status error";
    return;
  }
  const switching = $("join-switch").checked && state.active?.kind === "room";
  status.textContent = "Joining…";
  status.className = "status";
  $("join-submit").disabled = true;
  try {
    await joinRoom(name, password, switching ? state.active : null, { history });
    $("join-dialog").close();
  } catch (e) {
    status.textContent = describeError(e);
    status.className = "status error";
  } finally {
    $("join-submit").disabled = false;
  }
}

export async function openDmDialog() {
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

export async function submitDm(event) {
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

let verifying = null; // the name the verify dialog is open for

export function openVerify(name) {
  const pin = state.pins.get(fold(name));
  if (!pin) return;
  verifying = name;
  $("verify-title").textContent = `Verify ${pin.name}`;
  $("verify-text").textContent = `Ask ${pin.name} to read out their fingerprint (in person or by phone). If it matches this one exactly, mark them verified.`;
  $("verify-fp").textContent = fingerprintLines(pin.fp);
  $("verify-dialog").showModal();
}

// The dialogs' own controls.
export function wireDialogs() {
  $("btn-join-open").addEventListener("click", openJoin);
  $("btn-empty-join").addEventListener("click", openJoin);
  $("join-form").addEventListener("submit", submitJoin);
  $("btn-dm-open").addEventListener("click", openDmDialog);
  $("dm-form").addEventListener("submit", submitDm);
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
}
