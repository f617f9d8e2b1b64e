# -*- test-case-name: chatd.test.test_client_devices -*-
"""
The terminal client's device commands: C{/devices}, C{/devices remove NAME},
C{/approve CODE}, C{/recover CODE} and C{/reset-identity} (docs/client.rst, "Devices"). The work
is the client's (L{chatd.client.devices}); these parse the words and show
the result.

Each command is a function of the console and the words after the command,
as the moderation commands are; the table and the help lines are merged into
the console's (L{chatd.client.commands}, L{chatd.client.lines}).
"""

from chatd.client.errors import ClientError

HELP = [
    ("/devices", "list your account's devices (this one marked) and those waiting "
                 "for approval"),
    ("/devices remove NAME", "take device NAME off your account (on the identity device)"),
    ("/approve CODE", "approve the new device that shows CODE (on the identity device)"),
    ("/recover CODE", "on a device waiting for approval: take your identity key back "
                      "with the recovery code shown at registration"),
    ("/reset-identity [yes]", "on a device waiting for approval, when every device and the "
                              "recovery code are lost: make this device's key your new "
                              "identity (everyone sees your key change)"),
]


async def showRecoveryCode(console, code):
    """
    Show a new recovery code, the once it is ever shown (at registration and
    at an identity reset); on a terminal, wait until it is written down.
    """
    console.show("your recovery code, shown this once: %s" % (code,))
    console.show("write it down and keep it safe: with it, a new device takes this identity "
                 "back if this one is lost (/recover CODE)")
    if console.interactive:
        await console.askSecret("press Enter once it is written down ", optional=True)


def _usage(usage):
    return ClientError("usage: %s" % (usage,))


async def devices(console, rest):
    words = rest.split()
    if words and words[0] == "remove":
        if len(words) != 2:
            raise _usage("/devices remove NAME")
        await console.client.removeDevice(words[1])
        console.show("removed device %s: it can read nothing sent from now on" % (words[1],))
        return
    if words:
        raise _usage("/devices [remove NAME]")
    rows, pending = await console.client.devices()
    console.show("devices of %s (%d):" % (console.client.user, len(rows)))
    for device, fingerprint, this, identity in rows:
        marks = [mark for mark, on in (("this device", this), ("identity", identity)) if on]
        console.show("  %-16s %s%s" % (device, fingerprint,
                                       "  [%s]" % (", ".join(marks),) if marks else ""))
    for device, fingerprint in pending:
        console.show("  %-16s %s  [waiting for approval: /approve CODE]" % (device, fingerprint))


async def approve(console, rest):
    words = rest.split()
    if len(words) != 1:
        raise _usage("/approve CODE")
    device, fingerprint = await console.client.approve(words[0])
    console.show("approved device %s (key %s); it can read what is sent from now on"
                 % (device, fingerprint))


async def recover(console, rest):
    words = rest.split()
    if len(words) != 1:
        raise _usage("/recover CODE")
    device = await console.client.recover(words[0])
    console.show("identity key recovered: this is now %s's identity device %s; logging in "
                 "again" % (console.client.user, device))


async def resetIdentity(console, rest):
    words = rest.split()
    if words not in ([], ["yes"]):
        raise _usage("/reset-identity [yes]")
    if not words and console.interactive:
        answer = await console.askSecret(
            "resetting makes this device's key your new identity: everyone you talk with "
            "sees your key change, and what your lost devices could read stays with them; "
            "type yes to go on: ")
        if answer.strip().lower() != "yes":
            raise ClientError("identity not reset")
    code = await console.client.resetIdentity()
    console.show("identity reset: this device's key is %s's new identity key (%s); everyone "
                 "you talk with is told it changed" % (console.client.user,
                                                       console.client.fingerprint()))
    await showRecoveryCode(console, code)


COMMANDS = {"devices": devices, "approve": approve, "recover": recover,
            "reset-identity": resetIdentity}
