"""
chatd's front doors: one module per wire format, each adapting to the core.
"""

from twisted.internet.protocol import Factory


class DoorFactory(Factory):
    """
    Builds one protocol of a door per connection, all on one core.

    @cvar protocol: the door's protocol class, made with the core.
    """

    def __init__(self, service):
        self.service = service

    def buildProtocol(self, addr):
        protocol = self.protocol(self.service)
        protocol.factory = self
        return protocol
