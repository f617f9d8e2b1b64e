"""
The chat core: users, sessions, rooms, messages and their rules, knowing no protocol.

Front doors call L{chatd.core.service.ChatService.connect} for each connection
and then one L{chatd.core.session.Session} method per request; each method
returns its result, or a L{Deferred} of it, or raises a
L{chatd.errors.ChatError}. Events reach sessions through their L{IChatClient}.

Vocabulary: a I{user} is a name online (a guest, or an account with one or more
sessions); a I{session} is one connection. Membership is per user: every session
of a member receives the room's events, except that the session whose request
caused an event gets the response instead.

Checks run in the order docs/protocol.rst ranks them, so that when several
apply the client hears about the first.

The modules: L{directory} (users, rooms and memberships, which it alone
changes), L{events} (what changes, as frozen values with one wire form),
L{service} (the one L{ChatService} of a node, which applies events and tells
sessions), L{session} (one connection's state and timers), L{base} (the state
and guards every request family stands on), and one module per
family of requests: L{accounts}, L{rooms}, L{messages}, L{files},
L{moderation}; L{remotefiles} carries file transfers between nodes, L{view} is
what the fan-out reads of the directory, L{replay} keeps the envelope ids seen
lately. docs/architecture.rst draws them.
"""
