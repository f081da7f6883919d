"""A batch size as a config states it (samples, or a percentage of the training set) turned into
samples, and the rule that a global batch splits evenly over workers and micro-batches.

Why apart from `config.py`: the arithmetic is used by the validators and by every caller that
resolves a batch against a loaded data set (the trainer, the search's fairness checks,
`remedies reproduce`), and depends on nothing but the error type.
"""

from __future__ import annotations

import re

from remedies.errors import ConfigError

FRACTION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def resolve_batch_size(value: int | str, n_train: int, field: str) -> int:
    if isinstance(value, str):
        frac = float(FRACTION.match(value).group(1)) / 100  # type: ignore[union-attr]
        return max(1, round(frac * n_train))
    if value > n_train:
        raise ConfigError(
            field,
            f"batch size {value} is larger than the training set ({n_train} samples); "
            f"allowed: 1..{n_train} or a percentage like '10%'",
        )
    return value


def check_split(b: int, workers: int, accumulate: int, what: str = "batch size") -> None:
    """A global batch `b` must split into `workers` equal shares of `accumulate` equal
    micro-batches: uneven shares would weight samples unequally in the averaged gradient."""
    if b % workers:
        ok = [str(k) for k in range(1, b + 1) if b % k == 0]
        shown = ", ".join(ok[:10]) + (", ..." if len(ok) > 10 else "")
        raise ConfigError(
            "train.workers",
            f"{what} {b} does not split evenly over {workers} "
            f"workers; allowed: a divisor of {b} ({shown})",
        )
    if (b // workers) % accumulate:
        share = b // workers
        raise ConfigError(
            "train.accumulate",
            f"{what} {b} over {workers} worker(s) is {share} "
            f"per worker, which does not split into {accumulate} equal "
            f"micro-batches; allowed: a divisor of {share}",
        )
