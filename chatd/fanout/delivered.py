# -*- test-case-name: chatd.test.test_fanout -*-
"""
What a node has delivered lately, so that nothing reaches its sessions twice
when one message comes by two ways: live through Redis and again in a
catch-up from the database, or queued by another node and re-sent after a
reconnect.

A message is known by its sender and envelope id, the pair the store keeps
unique, and never by its timestamp: while Redis is away two nodes may give one
account's messages the same timestamp, and telling messages apart by
(timestamp, sender) then dropped one of them.
"""

from collections import deque
from typing import Deque, Set, Tuple, Union

from chatd import e2e
from chatd.names import fold

# A message's sender (folded) and envelope id.
EnvelopeKey = Tuple[str, str]


def envelopeKey(sender: str, envelope: Union[bytes, e2e.Envelope]) -> EnvelopeKey:
    """
    What tells a message apart from every other: its sender (folded) and its
    envelope id.

    @param envelope: the envelope, L{bytes}, or an L{e2e.Envelope} already parsed.
    @raise e2e.EnvelopeError: when C{envelope} is not one.
    """
    parsed = envelope if isinstance(envelope, e2e.Envelope) else e2e.Envelope.parse(envelope)
    return fold(sender), parsed.id


class Delivered:
    """
    The keys (from L{envelopeKey}) of messages delivered here lately, each
    with the time it stands for, so that old ones can be forgotten.
    """

    def __init__(self) -> None:
        self._seen: Set[EnvelopeKey] = set()
        self._order: Deque[Tuple[float, EnvelopeKey]] = deque()

    def add(self, when: float, key: EnvelopeKey) -> bool:
        """
        Remember C{key}.

        @param when: the message's timestamp (ms), by which it is forgotten.
        @return: whether it is new (and so to be delivered).
        """
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append((when, key))
        return True

    def prune(self, floor: float) -> None:
        """
        Forget what is older than C{floor} (ms); entries are roughly in
        timestamp order, so a late straggler lingers a little, which is harmless.
        """
        while self._order and self._order[0][0] < floor:
            self._seen.discard(self._order.popleft()[1])

    def __len__(self) -> int:
        return len(self._seen)
