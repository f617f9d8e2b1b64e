"""
A base for test mixins, so that mypy knows what they may call.

A mixin's methods call C{self.assertEqual} and the rest, which only the
L{TestCase} it is later mixed into provides. To mypy the mixin derives from
L{TestCase}; at run time from L{object}, so that trial does not collect the
mixin itself as a test case.
"""

from typing import TYPE_CHECKING

from twisted.trial.unittest import TestCase

if TYPE_CHECKING:
    TestCaseMixin = TestCase
else:
    TestCaseMixin = object
