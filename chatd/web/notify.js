// Desktop notifications for what arrives while this tab is hidden, once the
// person allowed them. Browsers ask for that permission only on a click, so a
// "Notify me" button asks. A notification names the sender and the
// conversation, never the text: the text is end-to-end encrypted, and a
// notification is shown by the system, outside the page.

import { $ } from "./dom.js";

function supported() {
  return "Notification" in window;
}

function renderButton() {
  $("btn-notify").classList.toggle("hidden", !supported() || Notification.permission !== "default");
}

export function wireNotifications() {
  renderButton();
  $("btn-notify").addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      renderButton();
    }
  });
}

// Tell the person about `item`, new in `conv`, if the tab is hidden;
// `open()` shows the conversation when the notification is clicked.
export function notifyItem(conv, item, open) {
  if (!document.hidden || !supported() || Notification.permission !== "granted") return;
  const where = conv.kind === "room" ? ` in ${conv.name}` : "";
  const body = item.type === "file" ? "offers a file" : "sent a message";
  const notification = new Notification(`${item.from}${where}`, { body, tag: `chatd ${conv.kind} ${conv.key}` });
  notification.onclick = () => {
    window.focus();
    open();
    notification.close();
  };
}
