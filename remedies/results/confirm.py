"""`remedies export --confirm-seeds K`: re-train the best candidates over K extra seeds first.

Why: a search selects on one seed's validation accuracy; on a split of a few hundred samples the
best-looking trial is often the luckiest (measured: a quickstart pick read val 72.5 %, test
64.9 %). Re-evaluating the top candidates over more seeds and choosing on the mean validation
accuracy makes the pick generalise; test accuracy is shown beside it, never used to choose.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any, Protocol

from remedies.config import RunConfig, parse_config

TOP = 3  # candidates re-trained (each K times): the cost stays a few runs


class Result(Protocol):
    val_accuracy: float
    test_accuracy: float


Train = Callable[[RunConfig], Result]  # one run, trained without measures or progress lines


def candidates(rows: list[dict[str, Any]], key, top: int = TOP) -> list[dict[str, Any]]:
    """The `top` rows by `key` (best first)."""
    return sorted(rows, key=key, reverse=True)[:top]


def confirm(
    rows: list[dict[str, Any]], seeds: int, train: Train, quiet: bool = False
) -> list[dict[str, Any]]:
    """Re-train each row's config with seeds seed+1 … seed+K (no measures) through `train` (the
    caller's: `remedies.launch.fit`, so this reader starts no workers itself); store per-seed
    validation and test accuracy (the search's own run first) in `row["confirm"]`."""

    for r in rows:
        base = parse_config(r["config"])
        val, test, used = [r["val_accuracy"]], [r["test_accuracy"]], [base.train.seed]
        for k in range(1, seeds + 1):
            cfg = base.model_copy(deep=True)
            cfg.train.seed = base.train.seed + k
            res = train(cfg)
            val.append(res.val_accuracy)
            test.append(res.test_accuracy)
            used.append(cfg.train.seed)
            if not quiet:
                print(
                    f"confirm trial {r['number']}, seed {cfg.train.seed}: val "
                    f"{res.val_accuracy:.2f} %, test {res.test_accuracy:.2f} %",
                    file=sys.stderr,
                    flush=True,
                )
        r["confirm"] = {"seeds": used, "val": val, "test": test}
    return rows


def mean_val(row: dict[str, Any]) -> float:
    return statistics.mean(row["confirm"]["val"])


def header(
    row: dict[str, Any], others: list[dict[str, Any]], refs: dict[str, Any] | None = None
) -> str:
    """The export's header lines: per-seed val and test, and — with references — the answer
    standing on those seeds' spread instead of the validation standard error."""
    c = row["confirm"]

    def ms(v: list[float]) -> str:
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.2f} ± {sd:.2f}"

    cands = ", ".join(f"trial {o['number']} {mean_val(o):.2f}" for o in others)
    out = (
        f"# confirmed over seeds {c['seeds']}: val {ms(c['val'])} %, test {ms(c['test'])} % "
        f"(chosen on mean val among: {cands})\n"
    )
    if refs:
        speed = (row.get("metrics") or {}).get("speedup_vs_sb")
        fast = f", {speed:.2f}× SB's speed to its accuracy (seed {c['seeds'][0]})" if speed else ""
        out += (
            f"# answer: trial {row['number']}, {ms(c['test'])} % test over seeds {c['seeds']} "
            f"(SB {refs['sb']['test_accuracy']:.1f} %){fast}\n"
        )
    return out
