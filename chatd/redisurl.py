# -*- test-case-name: chatd.test.test_cluster_outage -*-
"""
A cluster's Redis URL, C{redis[s]://[[user]:password@]host[:port][/db]}: its
parts, and the check C{--redis} makes of it.

Its own module because both the settings (L{chatd.config}) and the fan-out's
connections (L{chatd.fanout.connections}) read it, and neither is about the
other.
"""

import urllib.parse
from typing import NamedTuple, Optional


class RedisURL(NamedTuple):
    """
    Where a cluster's Redis is and how to log in to it.

    @ivar password: L{None} when not given (no AUTH).
    @ivar username: for Redis 6 ACL users; L{None} for the default user.
    @ivar tls: whether to speak TLS (C{rediss://}), checking the server's
        certificate against the system's trusted authorities and the host name.
    """

    host: str
    port: int
    db: int
    password: Optional[str]
    username: Optional[str]
    tls: bool


def redisURL(url):
    """
    Split a Redis URL, C{redis[s]://[[user]:password@]host[:port][/db]}.

    @rtype: L{RedisURL}
    @raise ValueError: when C{url} is not such a URL.
    """
    expected = "(expected redis://host:port/N or rediss://host:port/N)"
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("%r is not a redis:// or rediss:// URL %s" % (url, expected))
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("%r has a bad port %s" % (url, expected))
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError("%r: the database must be a number %s" % (url, expected))
    if parts.query or parts.fragment:
        raise ValueError("%r: no query or fragment, please %s" % (url, expected))
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    username = urllib.parse.unquote(parts.username) if parts.username else None
    if username is not None and password is None:
        raise ValueError("%r: a user name needs a password (user:password@host)" % (url,))
    return RedisURL(parts.hostname, port, int(db), password, username,
                    parts.scheme == "rediss")


def redisAddress(url):
    """
    The first four parts of L{redisURL}: C{(host, port, db, password)}.
    """
    return tuple(redisURL(url)[:4])


def parseRedis(value):
    """
    The Redis URL of a cluster's fan-out: C{redis://host:port/N}, or
    C{rediss://} for TLS.
    """
    value = value.strip()
    redisAddress(value)
    return value
