"""
Make C{twistd chatd} run the service built by L{chatd.tap}.
"""

from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd",
    "chatd.tap",
    "An end-to-end encrypted chat server (binary protocol over TLS or TCP).",
    "chatd",
)
