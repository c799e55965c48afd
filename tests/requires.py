"""Client libraries the cloud tests need.

On a developer machine without one, its tests are skipped. Under CI (``$CI`` set) every
library is installed by ``make install``, so a missing one is an error: a skip there would
hide that a backend went untested.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def client_library(name: str) -> ModuleType:
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)
