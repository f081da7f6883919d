"""remedies — search for training recipes that close the large-batch generalization gap.

The library API for a training loop of your own is `remedies.Recipe` (see `remedies.engine.api`):
`remedies.Recipe.from_yaml("best.yaml").apply(model, n_train=..., input_shape=...)`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Applied", "Recipe"]


def __getattr__(name: str) -> Any:
    # lazy: `remedies --help` and the service's driver must not pay for torch at import
    if name in __all__:
        from remedies.engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'remedies' has no attribute {name!r}")
