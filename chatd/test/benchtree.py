"""
Where the tests of C{bench/} find it.

C{bench/} is not installed with chatd: it lives in the source tree beside the
package. An editable install runs the tests from the tree itself; the
README's test command runs an installed copy's tests from the tree (trial
works in C{_trial_temp} below it). The tree is the package's own parent when
that holds C{bench/}, or else the first directory up from the working
directory that does; it goes on C{sys.path}, so that C{bench} imports and the
generators it spawns find the tree. With neither, the tests are skipped.
"""

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from twisted.trial.unittest import SkipTest

import chatd


def _find() -> Optional[Path]:
    """
    The source tree that holds C{bench/}, or L{None}.
    """
    package = Path(chatd.__file__).resolve().parent.parent
    here = Path.cwd().resolve()
    for root in (package, here, *here.parents):
        if (root / "bench" / "shapes.py").is_file():
            return root
    return None


def benchRoot() -> str:
    """
    The source tree's directory, put on C{sys.path}.

    @raise SkipTest: there is no source tree with C{bench/} about.
    """
    root = _find()
    if root is None:
        raise SkipTest("no bench/ beside chatd nor above " + str(Path.cwd()))
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return str(root)


def benchModule(name: str) -> ModuleType:
    """
    The module C{bench.name} of the source tree.

    @raise SkipTest: there is no source tree with C{bench/} about.
    """
    benchRoot()
    return importlib.import_module("bench." + name)
