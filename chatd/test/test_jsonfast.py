"""
Tests for L{chatd.envelopeshape._loads}'s two parsers: orjson's result is
taken only for the compact JSON it would write itself, so that what is
accepted, and what is made of it, is what the standard parser with its
repeated-key check would give.
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd import e2e, envelopeshape
from chatd.envelopeshape import EnvelopeError
from chatd.test.fakes import privateKey, publicDer


def reference(data):
    """
    What the standard parser alone makes of C{data}: the object, or the
    message of the L{EnvelopeError} it is refused with.
    """
    try:
        obj = envelopeshape._DECODER.decode(data.decode("utf-8"))
    except EnvelopeError as error:
        return error.message
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "envelope: not UTF-8 JSON"
    if not isinstance(obj, dict):
        return "envelope: not a JSON object"
    return obj


def loaded(data):
    try:
        return envelopeshape._loads(data)
    except EnvelopeError as error:
        return error.message


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
                     st.floats(allow_nan=False, allow_infinity=False))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


class LoadsTests(SynchronousTestCase):
    """
    The two parsers agree.
    """

    def test_compactRepeatedKey(self):
        """
        A key given twice in compact JSON, the form orjson would take, is
        refused, at the top and inside a map.
        """
        self.assertEqual(loaded(b'{"v":1,"ts":2,"ts":2}'), "envelope: duplicate key 'ts'")
        self.assertEqual(loaded(b'{"v":1,"encrypted_keys":{"bob":"YQ==","bob":"YQ=="}}'),
                         "envelope: duplicate key 'bob'")

    def test_clientsTakeTheFastWay(self):
        """
        A sealed envelope as clients write it is read by orjson alone.
        """
        data = e2e.seal("alice", privateKey("alice"), ("room", "#r"),
                        {"alice": publicDer("alice"), "bob": publicDer("bob")}, b"hi")

        class Refusing:
            def decode(self, text):
                raise AssertionError("the standard parser was asked")

        self.patch(envelopeshape, "_DECODER", Refusing())
        self.assertEqual(e2e.Envelope.parse(data).sender, "alice")

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(max_size=4), _values, max_size=4), st.booleans(),
           st.booleans(), st.data())
    def test_sameAsStandard(self, obj, compact, asciiOnly, data):
        """
        Written compactly or not, ASCII-escaped or not, with a key repeated
        or not: the result, or the refusal, is the standard parser's.
        """
        separators = (",", ":") if compact else (", ", ": ")
        text = json.dumps(obj, separators=separators, ensure_ascii=asciiOnly)
        if obj and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(obj)))
            text = text[:-1] + separators[0] + json.dumps(key) + separators[1] + "0}"
        encoded = text.encode("utf-8")
        self.assertEqual(loaded(encoded), reference(encoded))
