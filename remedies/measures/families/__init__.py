"""The built-in measure families, one module each; importing this package registers every one.

A new measure is one file here: its config section (a `Section` subclass), the keys it reports, a
function computing them, and one `register_measure(Measure(...))` call at module level. Every
module in this folder is imported below (no list to keep in step), in sorted order so registration
is the same on every machine; `Measure.order` places its section in `measure:`.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
