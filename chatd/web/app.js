// chatd's browser client: sign-in, rooms, direct messages, members with
// fingerprints, key pinning and warnings, history and files. Every message is
// sealed here (crypto.js) for exactly the members the server lists, and every
// message received is opened and checked against the sender's pinned key
// before it is shown.
//
// The modules, by concern: state.js (the one state object), dom.js (page
// helpers), trust.js (pins and key warnings), conversations.js, messaging.js
// (receiving and sending), events.js (server events, by type), render.js,
// filecards.js, dialogs.js, session.js, moderation.js; devices: devices.js
// (list bytes, approval and recovery crypto), devicetrust.js (whose devices
// get keys), devicesession.js (signing in as a device), deviceui.js. This one wires the page's controls;
// a feature module wires its own (as dialogs.js does) and registers the events
// it handles (events.js on()), so adding one touches only this file.

import { joinRoom, leaveRoom } from "./conversations.js";
import { wireDevices } from "./deviceui.js";
import { wireDialogs } from "./dialogs.js";
import { wireDrawers } from "./drawers.js";
import { $, describeError, toast } from "./dom.js";
import { sendFile } from "./filecards.js";
import { sendText } from "./messaging.js";
import { wireModeration } from "./moderation.js";
import { wireNotifications } from "./notify.js";
import { wireSharing } from "./sharing.js";
import { renderAll } from "./render.js";
import { signIn, signOut } from "./session.js";
import { state } from "./state.js";
import { newOwnKey } from "./trust.js";

function wire() {
  wireDialogs();
  wireDevices();
  wireSharing();
  wireDrawers();
  wireNotifications();
  wireModeration(); // before the composer's handler: it takes its commands first
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn("login");
  });
  $("btn-register").addEventListener("click", () => signIn("register"));
  $("btn-own-room").addEventListener("click", () => joinRoom(null, "").catch((e) => toast(describeError(e), "error")));
  $("btn-leave").addEventListener("click", leaveRoom);
  $("btn-logout").addEventListener("click", signOut);
  $("btn-members").addEventListener("click", () => $("members-panel").classList.toggle("hidden"));
  $("btn-members-close").addEventListener("click", () => $("members-panel").classList.add("hidden"));

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

state.ownKey = newOwnKey();
wire();
