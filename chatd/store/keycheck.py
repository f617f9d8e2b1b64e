# -*- test-case-name: chatd.test.test_atrest -*-
"""
The check, as the SQL store opens, that its at-rest keys open the messages the
database holds.

A key file lost, or replaced by another, would otherwise go unnoticed until
someone read history: every old message would fail to open while new ones were
sealed under a key the old ones do not share. So the store refuses to open
when a key that stored messages name is not held, or, for the Fernet rows of
schema version 1, which name no key, when none of the newest of them opens
with what is held: canaries that say the keys are the right ones. Damage to
one row is the reader's concern (L{chatd.store.seal.openRows}); it stops the
start only if every canary is damaged.
"""

from chatd.store.seal import AtRestKeys, SealError

# How many of the newest Fernet rows are tried: more than one, so a single
# damaged row does not stop the start.
CANARIES = 5

# The distinct key ids of the stored messages, one index lookup each (a "loose
# index scan"): SELECT DISTINCT would read every row of the index.
_USED_KEYS = (
    "WITH RECURSIVE used (key_id) AS ("
    " SELECT MIN(key_id) FROM messages"
    " UNION ALL"
    " SELECT (SELECT MIN(m.key_id) FROM messages m WHERE m.key_id > used.key_id)"
    " FROM used WHERE used.key_id IS NOT NULL)"
    " SELECT key_id FROM used WHERE key_id IS NOT NULL"
)


def checkStoredKeys(txn, execute, keys: AtRestKeys) -> None:
    """
    Refuse keys that cannot open the stored messages.

    @param txn: the transaction to read in.
    @param execute: the store's C{execute(txn, query, parameters)}, which
        takes C{?} placeholders.
    @raise chatd.store.seal.AtRestKeyError: naming the key file and what it
        cannot open.
    """
    execute(txn, _USED_KEYS)
    used = [keyId for (keyId,) in txn.fetchall()]
    missing = sorted(set(used) - keys.ids)
    if missing:
        execute(
            txn,
            "SELECT COUNT(*) FROM messages WHERE key_id IN (%s)"
            % (", ".join("?" * len(missing)),),
            missing,
        )
        [(count,)] = txn.fetchall()
        raise keys.refusal(
            f"does not hold the at-rest key{'s' * (len(missing) > 1)}"
            f" {', '.join(missing)} that {count}"
            " stored messages are sealed with")
    # A key id is derived from its key, so a held id is the right key. The
    # Fernet rows of schema version 1 name no key: only trying them tells.
    execute(
        txn,
        "SELECT room_key, sender, envelope_id, body FROM messages"
        " WHERE key_id IS NULL ORDER BY id DESC LIMIT ?",
        (CANARIES,),
    )
    canaries = txn.fetchall()
    if canaries and not any(_opens(keys, *row) for row in canaries):
        raise keys.refusal(
            "cannot open the stored messages of the old (Fernet) format")


def _opens(keys, roomKey, sender, envelopeId, body):
    try:
        keys.open(None, body, roomKey, sender, envelopeId)
    except SealError:
        return False
    return True
