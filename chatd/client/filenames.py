# -*- test-case-name: chatd.test.test_client_files -*-
"""
Where a received file goes: a safe name made from the one its sender chose
(which nobody checked), in the download folder, never over an existing file.
"""

import os
import re
import unicodedata

from chatd.client.errors import TransferError

# Bytes of UTF-8 a received file's name may take: filesystems allow 255, and
# " (123)" and the temporary prefix need room.
NAME_BYTES = 200
# How many " (n)" suffixes to try before giving up on a free name.
MAX_SUFFIX = 10000
# Windows gives these names devices whatever their extension; a file shared
# with such a name could not be opened there.
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")


def safeName(name):
    """
    A file name that is safe to create in the download folder, made from the
    name a sender chose (which nobody checked).

    Path separators (C{/}, C{\\}) and C{:} become C{_}, so the name is one
    component; control, format (bidirectional overrides, zero-width) and
    unassigned characters become C{_} too, so the name cannot hide its real
    extension or move the cursor; leading dots and spaces go, so it is never
    C{.} or C{..} nor a hidden file; it is cut to L{NAME_BYTES} bytes of UTF-8
    keeping a short extension; an empty result is C{file}, and a name Windows
    reserves for a device gets a C{_} in front.

    @type name: L{str}
    @rtype: L{str}
    """
    name = unicodedata.normalize("NFC", name)
    kept = []
    for char in name:
        if char in "/\\:" or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn",
                                                           "Zl", "Zp"):
            kept.append("_")
        elif char.isspace():
            kept.append(" ")
        else:
            kept.append(char)
    name = "".join(kept).strip(" .")
    if len(name.encode("utf-8")) > NAME_BYTES:
        stem, extension = os.path.splitext(name)
        if len(extension.encode("utf-8")) > 16:
            stem, extension = name, ""
        budget = NAME_BYTES - len(extension.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
        name = stem + extension
    if not name:
        name = "file"
    if _RESERVED.fullmatch(name):
        name = "_" + name
    return name


def placeFile(temporary, folder, name):
    """
    Give the finished C{temporary} file its final name in C{folder}: L{safeName}
    of C{name}, or C{stem (1).ext}, C{stem (2).ext}, ... when that is taken, so
    an existing file is never replaced.

    A hard link claims the name atomically (it fails when the name exists);
    where links are not allowed, an exclusive create claims it and the file is
    then renamed over its own placeholder.

    @return: the final path.
    @raise TransferError: when no name can be had.
    """
    folder = os.path.realpath(folder)
    stem, extension = os.path.splitext(safeName(name))
    if not stem:
        stem, extension = extension, ""
    for n in range(MAX_SUFFIX):
        candidate = os.path.join(folder, stem + (" (%d)" % (n,) if n else "") + extension)
        # Belt and braces: safeName leaves no separator, but the file must
        # land in the folder whatever else happens.
        if os.path.dirname(candidate) != folder:
            raise TransferError("refusing to write outside %s" % (folder,))
        try:
            os.link(temporary, candidate)
        except FileExistsError:
            continue
        except OSError:
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(temporary, candidate)
            return candidate
        os.unlink(temporary)
        return candidate
    raise TransferError("no free name for %s in %s" % (stem + extension, folder))
