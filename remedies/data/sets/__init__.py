"""The built-in data sets, one module each; importing this package registers every one.

A new data set is one file here: a reader `DataConfig -> (x_train, y_train, x_test, y_test)` and
one `register_dataset(...)` call at module level. Every module in this folder is imported below
(no list to keep in step), in sorted order so registration is the same on every machine.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
