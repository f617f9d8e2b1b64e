# -*- test-case-name: chatd.test.test_devicecodes -*-
"""
The codes a person carries between devices, and what each one protects.

- The approval secret s (20 base32 characters, 100 bits) is made by a new
  device and never leaves it but through the person's hands: its HMAC tag
  binds the pending request to that device's key, so the approver signs the
  key the new device made and no other, and its HMAC over the approver's reply
  lets the new device trust the identity key and list it starts from.
- The recovery code R (26 base32 characters, 130 bits) is shown once at
  registration: the server keeps the identity key sealed under it, and only R
  opens it.

Both codes are typed as one word: any case, dashes anywhere (to group it),
never spaces. The server never sees either; it relays tags, replies and blobs.
User names enter the MACs and the associated data lower-cased (ASCII; see
L{chatd.names.fold}), so that two spellings of one account agree.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatd import e2e, names
from chatd.devicelist import VerifiedList, keyHash, readServerList
from chatd.errors import BadRequest, ChatError, Forbidden

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
APPROVAL_LENGTH = 20
RECOVERY_LENGTH = 26

_APPROVE = b"chatd-approve-v1\0"
_APPROVED = b"chatd-approved-v1\0"
_RECOVERY = b"chatd-recovery-v1"
_MAC_SIZE = 32
_NONCE_SIZE = 12


class CodeError(BadRequest):
    """A code that is not the right number of base32 characters."""


class ApprovalError(Forbidden):
    """An approval reply that is not authentic, or does not approve this device."""


class RecoveryError(Forbidden):
    """A recovery blob that the code does not open, or that holds another key."""


def newCode(length: int) -> str:
    """
    A fresh random code of C{length} base32 characters.
    """
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def newApprovalSecret() -> str:
    """
    A new device's fresh approval secret s.
    """
    return newCode(APPROVAL_LENGTH)


def newRecoveryCode() -> str:
    """
    A fresh recovery code R.
    """
    return newCode(RECOVERY_LENGTH)


def normalizeCode(code: str, length: int) -> str:
    """
    The code as its canonical upper-case characters, dashes dropped.

    @raise CodeError: it is not C{length} base32 characters (spaces and other
        characters are refused, not dropped).
    """
    canonical = code.replace("-", "").upper()
    if len(canonical) != length or not all(c in ALPHABET for c in canonical):
        raise CodeError(f"code: must be {length} letters and digits 2-7 (dashes allowed)")
    return canonical


def groupCode(code: str) -> str:
    """
    The code grouped in fours with dashes, as clients show it.
    """
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def _user(user: str) -> bytes:
    return names.fold(user).encode("utf-8")


def _mac(secret: str, data: bytes) -> bytes:
    key = normalizeCode(secret, APPROVAL_LENGTH).encode("ascii")
    return hmac.new(key, data, hashlib.sha256).digest()


def approvalTag(secret: str, user: str, spki: bytes) -> bytes:
    """
    The tag a pending device sends with its request: HMAC-SHA256 under s of
    the domain, the user and the device's SPKI DER key.
    """
    return _mac(secret, _APPROVE + _user(user) + spki)


def checkTag(secret: str, user: str, spki: bytes, tag: bytes) -> bool:
    """
    Whether C{tag} is the one a device holding C{secret} made for C{spki}: a
    key the server swapped in does not pass.
    """
    return hmac.compare_digest(approvalTag(secret, user, spki), tag)


def findPending(secret: str, user: str,
                pending: Sequence[Tuple[str, bytes, bytes]]) -> Optional[Tuple[str, bytes]]:
    """
    The one pending C{(device id, SPKI DER)} whose tag the code verifies.

    @param pending: C{(device id, SPKI DER, tag)} as the server lists them.
    @return: L{None} when none does.
    @raise CodeError: the code is malformed.
    """
    normalizeCode(secret, APPROVAL_LENGTH)
    for device, spki, tag in pending:
        if checkTag(secret, user, spki, tag):
            return device, spki
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def buildReply(secret: str, user: str, device: str, deviceSpki: bytes,
               identitySpki: bytes, approved: VerifiedList,
               pins: Mapping[str, bytes]) -> bytes:
    """
    The approver's reply to a new device: its 32-byte MAC under s, then a
    UTF-8 JSON object naming the user, the device and its key, and carrying IK,
    the new list (text, signature, devices) and the approver's pins.

    @param approved: the list just published, which names the device.
    @param pins: user name to pinned IK (SPKI DER), the approver's.
    """
    text, signature, devices = approved.serverForm()
    body = json.dumps({
        "user": user, "device": device, "deviceKey": _b64(deviceSpki),
        "identityKey": _b64(identitySpki),
        "list": {"text": _b64(text), "signature": _b64(signature),
                 "devices": [{"id": d, "publicKey": _b64(k)} for d, k in devices]},
        "pins": {name: _b64(key) for name, key in sorted(pins.items())},
    }, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return _mac(secret, _APPROVED + body) + body


@dataclass(frozen=True)
class Approval:
    """
    What an authentic reply gives a new device.

    @ivar identityKey: the account's IK, SPKI DER: pin it.
    @ivar list: the verified list naming this device.
    @ivar pins: user name to IK (SPKI DER), the approver's pins to adopt.
    """

    identityKey: bytes
    list: VerifiedList
    pins: Dict[str, bytes]


def _decode(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.b64decode(value, validate=True)


def openReply(secret: str, reply: bytes, user: str, device: str,
              deviceSpki: bytes) -> Approval:
    """
    Check an approval reply with the secret this device made, before using
    anything in it.

    @raise ApprovalError: the MAC does not verify (a reply the server made or
        altered), or it approves another user, device or key, or its list is
        not signed by the IK it names or does not name this device.
    """
    mac, body = reply[:_MAC_SIZE], reply[_MAC_SIZE:]
    if len(mac) != _MAC_SIZE or not hmac.compare_digest(_mac(secret, _APPROVED + body), mac):
        raise ApprovalError("approval: the reply was not made with this device's code")
    try:
        obj = json.loads(body.decode("utf-8"))
        identity = _decode(obj["identityKey"])
        e2e.loadPublicKey(identity)
        entries = obj["list"]
        devices = [(entry["id"], _decode(entry["publicKey"])) for entry in entries["devices"]]
        approved = readServerList(user, identity, _decode(entries["text"]),
                                  _decode(entries["signature"]), devices)
        pins = {name: _decode(key) for name, key in obj["pins"].items()}
        for key in pins.values():
            e2e.loadPublicKey(key)
        forThis = (names.fold(obj["user"]) == names.fold(user) and obj["device"] == device
                   and _decode(obj["deviceKey"]) == deviceSpki)
    except (ChatError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ApprovalError(f"approval: the reply does not hold a valid approval ({e})")
    if not forThis:
        raise ApprovalError("approval: the reply approves another device")
    if approved.list is None or approved.list.ids().get(device) != keyHash(deviceSpki):
        raise ApprovalError("approval: the list does not name this device's key")
    return Approval(identity, approved, pins)


def _recoveryKey(code: str) -> bytes:
    material = normalizeCode(code, RECOVERY_LENGTH).encode("ascii")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_RECOVERY).derive(material)


def _recoveryAad(user: str) -> bytes:
    return _RECOVERY + b"\0" + _user(user)


def sealRecovery(code: str, user: str, identityKey: rsa.RSAPrivateKey) -> bytes:
    """
    The blob the server keeps: a 12-byte nonce, then IK's PKCS#8 DER sealed
    with AES-256-GCM under HKDF-SHA256(R), bound to the user.
    """
    der = identityKey.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    nonce = os.urandom(_NONCE_SIZE)
    return nonce + AESGCM(_recoveryKey(code)).encrypt(nonce, der, _recoveryAad(user))


def openRecovery(code: str, user: str, blob: bytes,
                 identitySpki: Optional[bytes] = None) -> rsa.RSAPrivateKey:
    """
    IK's private key from the recovery blob.

    @param identitySpki: the IK pinned for the account, when known: the key
        recovered must be it (no key change).
    @raise CodeError: the code is malformed.
    @raise RecoveryError: the code does not open the blob (a wrong code,
        another account's blob, an altered one), or it holds another key.
    """
    key = _recoveryKey(code)
    try:
        der = AESGCM(key).decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:],
                                  _recoveryAad(user))
    except (InvalidTag, ValueError):
        raise RecoveryError("recovery: this code does not open this account's key")
    private = serialization.load_der_private_key(der, None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise RecoveryError("recovery: the blob holds no RSA key")
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if identitySpki is not None and spki != identitySpki:
        raise RecoveryError("recovery: the blob holds another key than the account's")
    return private
