# -*- test-case-name: chatd.test.test_store -*-
"""
chatd's storage: accounts, rooms, memberships and room history behind
L{chatd.istore.IMessageStore}, chosen by a database URL.
"""

from typing import Any, Optional

from chatd.istore import IMessageStore
from chatd.store.engines import engineForURL
from chatd.store.guard import GuardedStore
from chatd.store.memory import MemoryStore
from chatd.store.seal import AtRestKeys
from chatd.store.sql import AdbapiStore
from chatd.turn import turnEndOf


def makeStore(url: str, keys: AtRestKeys, reactor: Optional[Any] = None,
              timeout: Optional[float] = None, memoryHistory: int = 1000) -> IMessageStore:
    """
    Build the store a database URL names; the caller then C{open}s it.

    @param url: C{memory:} (nothing kept across restarts),
        C{sqlite:///absolute/path}, C{sqlite:relative/path} or
        C{postgresql://user:password@host:port/database}.
    @param keys: the L{chatd.store.seal.AtRestKeys} envelopes are sealed
        with at rest.
    @param reactor: the reactor the SQL store's thread pool reports to, at
        whose turn's end (L{chatd.turn}) its writes start, and that keeps the
        deadlines; L{None} for the global one.
    @param timeout: seconds each call has to answer (a L{GuardedStore} sees
        to it, and PostgreSQL's connect and statement timeouts are set to it);
        L{None} for no deadline.
    @param memoryHistory: the most messages the C{memory:} store keeps per
        room.
    @return: an L{IMessageStore} provider.
    @raise ValueError: when the URL is not one of those forms, or names
        PostgreSQL while psycopg is not installed.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        reactor = globalReactor
    store: IMessageStore
    if url == "memory:":
        store = MemoryStore(keys, reactor, memoryHistory)
    else:
        engine, connectionArgs = engineForURL(url)
        pool = engine.connectionPool(connectionArgs, reactor, timeout=timeout)
        store = AdbapiStore(engine, connectionArgs, keys, pool=pool, reactor=reactor,
                            afterTurn=turnEndOf(reactor).later)
    if timeout is None:
        return store
    return GuardedStore(store, reactor, timeout)


__all__ = ["makeStore", "MemoryStore", "AdbapiStore", "GuardedStore"]
