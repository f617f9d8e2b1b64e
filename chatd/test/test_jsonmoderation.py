"""
Tests for the JSON vocabulary of room moderation (L{chatd.protocols.jsonmoderation}
and the moderation requests of L{chatd.protocols.jsonrequests.parseRequest}).
"""

import json
from typing import Any, Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from chatd.core.moderation import JoinAnswer
from chatd.protocols import jsonmoderation as jm
from chatd.protocols.jsonrequests import MalformedRequest, parseRequest
from chatd.protocols.jsonwire import joined

# Each moderation request as a client writes it, and the fields it parses to.
MODERATION_CASES: List[Tuple[str, Dict[str, Any]]] = [
    ('{"type":"kick","roomId":"#a","userId":"bob","reason":"spam"}',
     {"roomId": "#a", "userId": "bob", "reason": "spam"}),
    ('{"type":"ban","roomId":"#a","userId":"bob"}', {"roomId": "#a", "userId": "bob"}),
    ('{"type":"unban","roomId":"#a","userId":"bob"}',
     {"roomId": "#a", "userId": "bob"}),
    ('{"type":"set_role","roomId":"#a","userId":"bob","role":"none"}',
     {"roomId": "#a", "userId": "bob", "role": None}),
    ('{"type":"set_role","roomId":"#a","userId":"bob","role":"operator"}',
     {"roomId": "#a", "userId": "bob", "role": "operator"}),
    ('{"type":"set_topic","roomId":"#a","topic":""}', {"roomId": "#a", "topic": ""}),
    ('{"type":"set_password","roomId":"#a"}', {"roomId": "#a"}),
    ('{"type":"destroy_room","roomId":"#a"}', {"roomId": "#a"}),
    ('{"type":"room_info","roomId":"#a"}', {"roomId": "#a"}),
]


class RequestTests(SynchronousTestCase):
    """
    The moderation requests parse strictly, like every other.
    """

    def test_parsed(self):
        """
        Each request's fields come out as the core takes them: roles as
        C{"owner"}, C{"operator"} or L{None}.
        """
        cases = MODERATION_CASES
        for text, fields in cases:
            self.assertEqual(parseRequest(text).fields, fields, text)

    def test_refused(self):
        """
        A role other than the three, a missing user and an unknown field are
        malformed.
        """
        for text in ['{"type":"set_role","roomId":"#a","userId":"b","role":"admin"}',
                     '{"type":"kick","roomId":"#a"}',
                     '{"type":"destroy_room","roomId":"#a","now":true}']:
            self.assertRaises(MalformedRequest, parseRequest, text)


class ObjectTests(SynchronousTestCase):
    """
    The answers and events, as the doors send them.
    """

    def test_answers(self):
        """
        Each answer names the room and user as given, with the request's id.
        """
        self.assertEqual(json.loads(jm.kicked("#a", "bob", 3)),
                         {"type": "kicked", "id": 3, "roomId": "#a", "userId": "bob"})
        self.assertEqual(json.loads(jm.roleSet("#a", "bob", None)),
                         {"type": "role_set", "roomId": "#a", "userId": "bob", "role": "none"})
        self.assertEqual(json.loads(jm.topicSet("#a", None)),
                         {"type": "topic_set", "roomId": "#a", "topic": ""})
        self.assertEqual(json.loads(jm.roomInfo("#a", ("t", ["al"], [], ["eve"]))),
                         {"type": "room_info", "roomId": "#a", "topic": "t", "owners": ["al"],
                          "operators": [], "banned": ["eve"]})
        for build, kind in [(jm.banned, "banned"), (jm.unbanned, "unbanned")]:
            self.assertEqual(json.loads(build("#a", "b"))["type"], kind)
        self.assertEqual(json.loads(jm.passwordSet("#a"))["type"], "password_set")
        self.assertEqual(json.loads(jm.destroyed("#a"))["type"], "destroyed")

    def test_events(self):
        """
        A ban of a member is C{user_banned}, a kick C{user_kicked}; topics,
        roles and destroyed rooms have their events; none carries an id.
        """
        self.assertEqual(json.loads(jm.userKicked("#a", "eve", "al", True, "spam")),
                         {"type": "user_banned", "roomId": "#a", "userId": "eve", "by": "al",
                          "reason": "spam"})
        self.assertEqual(json.loads(jm.userKicked("#a", "eve", "al", False, ""))["type"],
                         "user_kicked")
        self.assertEqual(json.loads(jm.topicChanged("#a", "al", "hi \u2713")),
                         {"type": "topic_changed", "roomId": "#a", "by": "al",
                          "topic": "hi \u2713"})
        self.assertEqual(json.loads(jm.roleChanged("#a", "bob", "al", "owner")),
                         {"type": "role_changed", "roomId": "#a", "userId": "bob", "by": "al",
                          "role": "owner"})
        self.assertEqual(json.loads(jm.roomDestroyed("#a", "al")),
                         {"type": "room_destroyed", "roomId": "#a", "by": "al"})

    def test_joinedTopic(self):
        """
        C{joined} carries the topic when the room has one, and no such field
        when it has none.
        """
        self.assertEqual(json.loads(joined("#a", JoinAnswer([], "hello"), guests=()))["topic"],
                         "hello")
        self.assertNotIn("topic", json.loads(joined("#a", JoinAnswer([], None), guests=())))
        self.assertNotIn("topic", json.loads(joined("#a", [], guests=())))
