# -*- test-case-name: chatd.test.test_store -*-
"""
chatd's storage: accounts, rooms, memberships and room history behind
L{chatd.interfaces.IMessageStore}, chosen by a database URL.
"""

from chatd.store.engines import engineForURL
from chatd.store.memory import MemoryStore
from chatd.store.sql import AdbapiStore


def makeStore(url, keys, reactor=None):
    """
    Build the store a database URL names; the caller then C{open}s it.

    @param url: C{memory:} (nothing kept across restarts),
        C{sqlite:///absolute/path}, C{sqlite:relative/path} or
        C{postgresql://user:password@host:port/database}.
    @param keys: the L{chatd.store.seal.AtRestKeys} envelopes are sealed
        with at rest.
    @param reactor: the reactor the SQL store's thread pool reports to, or
        L{None} for the global one.
    @return: an L{IMessageStore} provider.
    @raise ValueError: when the URL is not one of those forms, or names
        PostgreSQL while psycopg is not installed.
    """
    if url == "memory:":
        return MemoryStore(keys)
    engine, connectionArgs = engineForURL(url)
    return AdbapiStore(engine, connectionArgs, keys, reactor=reactor)


__all__ = ["makeStore", "MemoryStore", "AdbapiStore"]
