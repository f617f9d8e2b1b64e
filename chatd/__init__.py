"""
chatd: a multi-protocol, end-to-end encrypted chat daemon built on Twisted.
"""

__version__ = "0.1.0"
