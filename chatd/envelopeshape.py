# -*- test-case-name: chatd.test.test_e2e -*-
"""
What a well-formed envelope looks like, field by field, for both versions.

L{chatd.e2e} parses with these checks; they live apart from it because they are
one idea (the shape, not the cryptography) and so that version 2's fields do
not grow that module past reading.
"""

import json
import re
from operator import itemgetter

import orjson
import pybase64

from chatd.errors import BadRequest

# The fields of each version, in the order an envelope's JSON gives them.
FIELDS = {
    1: ("v", "alg", "id", "from", "to", "ts", "nonce", "kc",
        "encrypted_message", "encrypted_keys", "key_ids", "signature"),
    2: ("v", "alg", "id", "from", "to", "ts", "nonce", "kc", "dev", "head", "hist",
        "encrypted_message", "encrypted_keys", "key_ids", "signature"),
}
_FIELD_SETS = {version: frozenset(fields) for version, fields in FIELDS.items()}
_TO_KINDS = frozenset({"room", "user"})

# The most a room keeps visible to newcomers, and so the largest C{hist}.
MAX_HISTORY = 500

# Fixed-size values must be the one canonical spelling of their bytes, so that no
# two strings name the same id (the replay set keys on the string) or key check.
_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
_NONCE = re.compile(r"[A-Za-z0-9+/]{16}")
_KC = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_NOT_IN_HEADER = re.compile("[\n\ud800-\udfff]")
_HASH = re.compile(r"[0-9a-f]{64}")
DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# Every entry key of a version-2 map, each followed by a newline: checked with
# one match over them all rather than one per entry (a room's map has one entry
# per device of every member, and this runs for every message).
_ENTRY_KEYS = re.compile(r"(?:[A-Za-z0-9_.-]{1,32}(?:/[A-Za-z0-9_.-]{1,32})?\n)*")


class EnvelopeError(BadRequest):
    """An envelope of the wrong shape, or one that does not open (status 0x01)."""


def quote(name):
    """
    A JSON key for an error message, cut short so a hostile one cannot bloat it.
    """
    return repr(name[:40])


def _uniquePairs(pairs):
    """
    A C{json} object hook that refuses duplicate keys, which would let two readers
    of one envelope see two different values.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise EnvelopeError(f"envelope: duplicate key {quote(key)}")
            seen.add(key)
    return obj


def _refuseConstant(name):
    """
    A C{json} hook refusing C{NaN} and C{Infinity}, which are not JSON.
    """
    raise EnvelopeError(f"envelope: {name} is not JSON")


def isHeaderText(value):
    """
    Whether C{value} may go into the header as a name: non-empty, free of newlines
    (one of which would let one header be read as two different envelopes) and of
    lone surrogates (which have no UTF-8 form to sign).
    """
    return isinstance(value, str) and value != "" and not _NOT_IN_HEADER.search(value)


def _matches(pattern, value):
    """
    Whether C{value} is a string that C{pattern} matches entirely.
    """
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _isBase64(value):
    """
    Whether C{value} is non-empty padded standard base64; it is checked, not
    decoded, because the server only ever passes such values on.
    """
    return (isinstance(value, str) and value != "" and len(value) % 4 == 0
            and _B64.fullmatch(value) is not None)


def _isKeyId(value):
    """
    Whether C{value} looks like a key id (see L{chatd.e2e.keyId}).
    """
    return _matches(_KEY_ID, value)


def _isCount(value, top):
    """
    Whether C{value} is an integer (not a boolean) from 0 to C{top}.
    """
    return type(value) is int and 0 <= value <= top


def _require(valid, field, what):
    """
    Refuse the envelope unless C{valid}; the message says what C{field} must be.
    """
    if not valid:
        raise EnvelopeError(f"envelope: {field} must be {what}")


def _requireMap(value, field, isValid, what, allValid=None):
    """
    Refuse the envelope unless C{value} is an object whose every value passes
    C{isValid}; the offending name goes into the message only on failure, so the
    common case builds no strings.

    @param allValid: when given, a check of all the values at once that holds
        exactly when C{isValid} holds for each (a room's maps have an entry per
        reader, and this runs for every message): only when it fails are the
        values looked at one by one, to name the first bad one.
    """
    _require(isinstance(value, dict), field, "an object")
    if allValid is not None and allValid(value.values()):
        return
    for name, entry in value.items():
        if not isValid(entry):
            raise EnvelopeError(f"envelope: {field}[{quote(name)}] must be {what}")


def _allBase64(values):
    """
    Whether every one of C{values} is what L{_isBase64} accepts: a room's
    key entries, checked for every message. Entries wrapped by keys of one
    size share one length and padding, and are checked as one text
    (L{_uniformBase64}); any others by L{_eachBase64}.
    """
    return _uniformBase64(values) or _eachBase64(values)


def _uniformBase64(values):
    """
    Whether C{values}, all of one non-zero length that is a multiple of 4,
    are base64: joined, with the padding that every one of them has made
    C{A}, they are one base64 text, which pybase64's strict decoder checks
    at memory speed (a quarter of what L{_eachBase64} costs on 200 entries).

    The lengths are proven alike without a call per value: joined by
    newlines, which base64 has none of, the values hold one at every
    (length + 1)th place and so nowhere else. The text's quads are then the
    values' own, so the decoder refuses a C{=} anywhere but in a value's
    padding. L{False} says only that this check does not apply or fails;
    L{_eachBase64} then decides.
    """
    try:
        joined = "".join(values)
        lined = "\n".join(values)
    except TypeError:  # a value that is not a string
        return False
    count = len(values)
    width = len(joined) // count if count else 0
    if (not width or width % 4 or len(joined) != width * count or not joined.isascii()
            or lined[width::width + 1] != "\n" * (count - 1)):
        return False
    # Padding that every value has is made "A", column by column from the
    # last: a "=" left anywhere but at the very end is then out of place.
    text = bytearray(joined, "ascii")
    for offset in (1, 2):
        if lined[width - offset::width + 1] != "=" * count:
            break
        text[width - offset::width] = b"A" * count
    try:
        pybase64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error: a character outside the alphabet
        return False
    return True


def _eachBase64(values):
    """
    Whether every one of C{values} is what L{_isBase64} accepts, whatever
    their lengths, checked on all of them at once by C's string methods,
    about three times as fast as the pattern per value: every character is
    of the alphabet or C{=}, every C{=} is among a value's last two
    characters and none is followed by another character, and every length
    is a non-zero multiple of 4.
    """
    try:
        joined = "".join(values)
    except TypeError:  # a value that is not a string
        return False
    if not joined.isascii():
        return False
    padding = joined.encode("ascii").translate(None, _B64_ALPHABET)
    if padding.strip(b"="):
        return False
    tails = list(map(_LAST_TWO, values))
    return (len(padding) == "".join(tails).count("=") and _BAD_TAILS.isdisjoint(tails)
            and all(length and not length % 4 for length in set(map(len, values))))


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_LAST_TWO = itemgetter(slice(-2, None))
# The last two characters of a value with padding before its end.
_BAD_TAILS = frozenset("=" + chr(c) for c in _B64_ALPHABET)


def _allKeyIds(values):
    """
    Whether every one of C{values} is what L{_isKeyId} accepts, checked on
    them all at once by C's string methods rather than a match per value:
    joined by newlines, they hold a newline at every 17th place and nowhere
    else, and nothing else but lowercase hex digits.
    """
    count = len(values)
    if not count:
        return True
    try:
        joined = "\n".join(values)
    except TypeError:  # a value that is not a string
        return False
    return (len(joined) == 17 * count - 1 and joined.isascii()
            and joined.count("\n") == count - 1 and joined[16::17] == "\n" * (count - 1)
            and not joined.encode("ascii").translate(None, _HEX_DIGITS))


_HEX_DIGITS = b"0123456789abcdef\n"


def _isHead(value):
    """
    Whether C{value} is a list head: C{{"v": version, "h": hex SHA-256}}.
    """
    return (isinstance(value, dict) and value.keys() == {"v", "h"}
            and type(value["v"]) is int and value["v"] >= 1
            and _matches(_HASH, value["h"]))


def _requireEntryKeys(encryptedKeys, keyIds):
    """
    Refuse a version-2 envelope unless both maps name the same readers, each an
    entry key (C{user} or C{user/device}); one match covers every key, and the
    newline count proves no key hid a newline of its own.
    """
    _require(encryptedKeys.keys() == keyIds.keys(), "key_ids",
             "keyed like encrypted_keys")
    joined = "".join(name + "\n" for name in encryptedKeys)
    _require(joined.count("\n") == len(encryptedKeys)
             and _ENTRY_KEYS.fullmatch(joined) is not None,
             "encrypted_keys", "keyed by user or user/device names")


def _loads(data):
    """
    The JSON object C{data} holds, refusing duplicate keys and non-JSON numbers.

    An envelope is mostly its key maps, one entry per reader: in a large
    room, parsing it was the largest part of what a message costs before it
    is delivered. orjson parses it in about a third of the time, but keeps
    the last of two values under one key rather than refusing them. So its
    result is taken only when C{data} is byte for byte what orjson writes for
    that result, which clients write (compact JSON) and which no repeated key
    survives; the standard parser, which refuses repeats, reads anything else.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is not dict or orjson.dumps(obj) != data:
        try:
            obj = _DECODER.decode(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EnvelopeError("envelope: not UTF-8 JSON")
    if not isinstance(obj, dict):
        raise EnvelopeError("envelope: not a JSON object")
    return obj


# Made once: json.loads with hooks would make a decoder for every envelope.
_DECODER = json.JSONDecoder(object_pairs_hook=_uniquePairs, parse_constant=_refuseConstant)


def check(data, alg):
    """
    Parse an envelope's JSON and check every field's shape for its version.

    @type data: L{bytes}, UTF-8 JSON.
    @param alg: the one algorithm name envelopes may carry.
    @return: the checked JSON object.
    @raise EnvelopeError: for anything but a well-formed envelope.
    """
    obj = _loads(data)
    if "v" not in obj:
        raise EnvelopeError("envelope: missing field 'v'")
    version = obj["v"]
    _require(type(version) is int and version in FIELDS, "v", "1 or 2")
    unknown = obj.keys() - _FIELD_SETS[version]
    if unknown:
        raise EnvelopeError(f"envelope: unknown field {quote(min(unknown))}")
    missing = [field for field in FIELDS[version] if field not in obj]
    if missing:
        raise EnvelopeError(f"envelope: missing field '{missing[0]}'")
    _require(obj["alg"] == alg, "alg", alg)
    _require(_matches(_ID, obj["id"]), "id", "16 bytes of unpadded base64url")
    _require(isHeaderText(obj["from"]), "from", "a non-empty one-line string")
    to = obj["to"]
    _require(isinstance(to, dict) and len(to) == 1 and not to.keys() - _TO_KINDS
             and isHeaderText(next(iter(to.values()))),
             "to", '{"room": name} or {"user": name}, name on one line')
    _require(type(obj["ts"]) is int and obj["ts"] >= 0, "ts",
             "a non-negative integer")
    _require(_matches(_NONCE, obj["nonce"]), "nonce", "12 bytes of base64")
    _require(_matches(_KC, obj["kc"]), "kc", "32 bytes of base64")
    _require(_isBase64(obj["encrypted_message"]), "encrypted_message",
             "non-empty base64")
    _requireMap(obj["encrypted_keys"], "encrypted_keys", _isBase64,
                "non-empty base64", _allBase64)
    _requireMap(obj["key_ids"], "key_ids", _isKeyId, "16 lowercase hex digits", _allKeyIds)
    _require(_isBase64(obj["signature"]), "signature", "non-empty base64")
    if version == 2:
        _checkDevices(obj)
    return obj


def _checkDevices(obj):
    """
    Check the fields version 2 adds: the sending device, its list head (both
    empty for an account without devices, both set for one with them), the
    history setting (0 for a direct message), and entry-keyed maps.
    """
    device, head = obj["dev"], obj["head"]
    _require(device == "" or _matches(DEVICE_ID, device), "dev",
             '"" or a device id')
    _require(head is None or _isHead(head), "head",
             'null or {"v": version from 1, "h": 64 lowercase hex digits}')
    _require((device == "") == (head is None), "head",
             'null exactly when dev is ""')
    top = MAX_HISTORY if "room" in obj["to"] else 0
    _require(_isCount(obj["hist"], top), "hist",
             f"an integer from 0 to {MAX_HISTORY} (0 for a direct message)")
    _requireEntryKeys(obj["encrypted_keys"], obj["key_ids"])
