// On a phone (below 700 px, style.css) the room list and the members panel
// are drawers over the conversation: the header's button opens the room list,
// the Members button the members panel, and picking a conversation, tapping
// the dimmed conversation or Escape closes them.

import { $ } from "./dom.js";

export function closeDrawers() {
  $("app-screen").classList.remove("rooms-open");
  $("btn-rooms").setAttribute("aria-expanded", "false");
  if (isPhone()) $("members-panel").classList.add("hidden");
}

function isPhone() {
  return window.matchMedia("(max-width: 699.98px)").matches;
}

export function wireDrawers() {
  $("btn-rooms").addEventListener("click", () => {
    const open = $("app-screen").classList.toggle("rooms-open");
    $("btn-rooms").setAttribute("aria-expanded", String(open));
  });
  $("drawer-scrim").addEventListener("click", closeDrawers);
  // Seen on the way down: picking a conversation redraws the list, and the
  // button clicked is no longer in it when the click bubbles up.
  $("sidebar").addEventListener("click", (event) => {
    if (event.target.closest(".conv-list button, #btn-own-room, .section-head button, #btn-me")) {
      $("app-screen").classList.remove("rooms-open");
      $("btn-rooms").setAttribute("aria-expanded", "false");
    }
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !document.querySelector("dialog[open]")) closeDrawers();
  });
}
