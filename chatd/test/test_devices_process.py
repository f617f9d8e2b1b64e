"""
End-to-end, devices: the real C{twistd chatd} and real C{python -m
chatd.client} processes, for what only real processes show: one account on
two terminal clients, approved with the code one shows and the other is
typed, talking with a second user; and a direct message that waits on the
server for a recipient with nobody online.

The clients read their standard input (piped, as a bot's would be), so that
the test types what a person would: the approval code is read from one
client's screen and typed into the other's.
"""

import os
import re
import sys

from chatd.test.processes import ScriptedClientTestCase, spawn, waitFor


class DevicesProcessTests(ScriptedClientTestCase):
    """
    alice on her laptop and her phone, and bob, through a real server.
    """

    timeout = 180

    def typing(self, port, name, home, *options):
        """
        Start a client as C{name} whose standard input the test types into.

        @return: its L{Child}, with C{type(line)}.
        """
        child = self.track(spawn(
            name, [sys.executable, "-m", "chatd.client", "--no-tls", "--host", "127.0.0.1",
                   "--port", str(port), "--home", os.path.join(self.workdir, home), *options],
            self.workdir, errorsApart=True))
        child.type = lambda line: child.process.write(line.encode("utf-8") + b"\n")
        return child

    async def shows(self, child, text, seconds=60, after=0):
        """
        Wait until C{child} has printed C{text} (after the first C{after}
        bytes of its output).

        @return: where it ends in the output.
        """
        await waitFor(lambda: text.encode() in child.output[after:], seconds,
                      "%r on %s's screen" % (text, child.name), child)
        return child.output.index(text.encode(), after) + len(text)

    async def test_twoDevicesAndAWaitingMessage(self):
        """
        The laptop registers alice; the phone logs in, shows a code, and is
        approved with it on the laptop; room messages and direct messages then
        reach both devices, what one device sends shows on the other, and
        nobody sees a key change. A direct message sent while both devices
        are away reaches the phone when it comes back.
        """
        server = await self.startServer()
        laptop = self.typing(server.port, "laptop", "alice-laptop", "--device", "laptop")
        laptop.type("/register alice alice-password")
        laptop.type("/create lobby")
        laptop.type("/join lobby")
        await self.shows(laptop, "registered and logged in as alice")
        await self.shows(laptop, "joined #lobby")

        bob = self.typing(server.port, "bob", "bob", "--device", "pc")
        bob.type("/register bob bob-password")
        bob.type("/join lobby")
        await self.shows(bob, "joined #lobby: 2 members")

        phone = self.typing(server.port, "phone", "alice-phone", "--device", "phone")
        phone.type("/login alice alice-password")
        await self.shows(phone, "within 10 minutes")
        found = re.search(rb"/approve ([A-Z2-7-]+)", phone.output)
        assert found is not None
        code = found.group(1).decode()
        await self.shows(laptop, "a new device phone")
        laptop.type("/approve %s" % (code,))
        await self.shows(laptop, "approved device phone")
        await self.shows(phone, "this device (phone) is approved")
        await self.shows(phone, "#lobby")

        bob.type("hi alice")
        await self.shows(laptop, "#lobby <bob> hi alice")
        await self.shows(phone, "#lobby <bob> hi alice")
        bob.type("/pm alice for both of your devices")
        await self.shows(laptop, "*dm* <bob> for both of your devices")
        await self.shows(phone, "*dm* <bob> for both of your devices")
        laptop.type("sent from the laptop")
        await self.shows(bob, "#lobby <alice> sent from the laptop")
        await self.shows(phone, "#lobby <alice> sent from the laptop")
        phone.type("/devices")
        await self.shows(phone, "[this device]")

        phone.type("/exit")
        laptop.type("/exit")
        await waitFor(lambda: phone.ended.called and laptop.ended.called, 30,
                      "alice's devices to exit", phone)
        bob.type("/pm alice while you were away")
        await self.shows(bob, "*dm to alice* <bob> while you were away")

        back = self.typing(server.port, "phone-again", "alice-phone", "--user", "alice")
        await self.shows(back, "*dm* <bob> while you were away")
        await self.shows(back, "caught up")
        back.type("/exit")
        bob.type("/exit")
        await waitFor(lambda: back.ended.called and bob.ended.called, 30, "the clients to exit",
                      back)

        self.assertCleanExits({"laptop": laptop, "phone": phone, "bob": bob,
                               "phone-again": back})
        for child in (laptop, phone, bob, back):
            self.assertNotIn(b"WARNING", child.output)
            self.assertNotIn(b"HAS CHANGED", child.output)
        await server.signal("TERM")
        self.assertNotIn(b"Traceback", server.output)
