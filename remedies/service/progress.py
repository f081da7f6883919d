"""The live progress table a search prints (Tune's own tables are turned off with verbose=0)."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from remedies.service.optuna_space import finite
from remedies.service.space import SearchSpace


class Progress(Callback):
    """A status line every `every` seconds, and one line per finished trial with the best so far.

    Why our own: Tune's reporter cannot show a multi-objective "best", and its table of every
    trial's config is unreadable for conditional spaces.
    """

    def __init__(self, space: SearchSpace, every: float = 30.0, quiet: bool = False) -> None:
        self.space, self.every, self.quiet = space, every, quiet
        self.t0 = time.time()
        self.last = 0.0
        self.done: dict[str, str] = {}
        self.best: dict[str, tuple[float, str]] = {}
        self.epochs: dict[str, Any] = {}

    def _print(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stdout, flush=True)

    def _status(self, trials) -> str:
        running = sum(t.status == "RUNNING" and t.trial_id not in self.done for t in trials)
        pending = sum(t.status == "PENDING" for t in trials)
        counts = {s: list(self.done.values()).count(s) for s in ("complete", "pruned", "failed")}
        best = "  ".join(f"best {k} {v:.4g} ({n})" for k, (v, n) in self.best.items())
        return (
            f"[{time.time() - self.t0:6.0f}s] trials {len(self.done)}/{self.space.num_samples}"
            f" done ({counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['failed']} failed), {running} running, {pending} pending  {best}"
        )

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs[trial.trial_id] = result.get("epoch")

    def on_step_end(self, iteration, trials, **info):
        if time.time() - self.last >= self.every:
            self.last = time.time()
            self._print(self._status(trials))

    def _finish(self, trials, trial, status: str) -> None:
        res = trial.last_result or {}
        if status == "complete" and not res.get("final"):
            status = "pruned"
        if status == "complete" and res.get("diverged"):
            status = "failed"
        self.done[trial.trial_id] = status
        vals = ""
        if status == "complete":
            parts = []
            for o in self.space.objectives:
                v = res.get(o.name)
                if finite(v):
                    parts.append(f"{o.name} {v:.4g}")
                    old = self.best.get(o.name)
                    better = old is None or (v > old[0] if o.mode == "max" else v < old[0])
                    if better:
                        self.best[o.name] = (v, trial.trial_id)
            vals = "  " + "  ".join(parts)
        epochs = res.get("epoch", 0)
        self._print(f"  trial {trial.trial_id} {status:<8} after {epochs} epochs{vals}")
        self._print(self._status(trials))
        self.last = time.time()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trials, trial, "complete")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trials, trial, "failed")
