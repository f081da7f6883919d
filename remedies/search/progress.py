"""The live progress lines a search prints (Tune's own tables are off: verbose=0).

Why our own: Tune's reporter cannot show a multi-objective "best", and its table of every trial's
config is unreadable for conditional spaces. Imports no Ray: the searcher feeds it decisions.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from remedies.search.outcome import Decision, Outcome
from remedies.search.space import SearchSpace
from remedies.stats import finite

SHOWN = (Outcome.COMPLETE, Outcome.PRUNED, Outcome.FAILED, Outcome.DIVERGED)


class Progress:
    """A status line every `every` seconds, one line per decided trial, best so far and an ETA."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        every: float = 30.0,
        quiet: bool = False,
        before: dict[str, int] | None = None,
    ) -> None:
        self.space, self.every, self.quiet = space, every, quiet
        self.t0 = time.time()
        self.last = 0.0
        self.counts: dict[Outcome, int] = {o: 0 for o in Outcome}
        for k, v in (before or {}).items():  # trials decided before a resume
            if Outcome(k).finished:
                self.counts[Outcome(k)] += v
        self.before = sum(self.counts.values())
        self.best: dict[str, tuple[float, int]] = {}
        self.tracking = ""

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stdout, flush=True)

    @property
    def done(self) -> int:
        return sum(self.counts[o] for o in SHOWN)

    def status(self, running: int, pending: int) -> str:
        n, total = self.done, self.space.num_samples
        elapsed = time.time() - self.t0
        new = n - self.before
        eta = f"  ETA {elapsed / new * (total - n):.0f}s" if new > 0 and n < total else ""
        counts = ", ".join(f"{self.counts[o]} {o.value}" for o in SHOWN)
        best = "  ".join(f"best {k} {v:.4g} (#{t})" for k, (v, t) in self.best.items())
        return (
            f"[{elapsed:6.0f}s] trials {n}/{total} done ({counts}), {running} running, "
            f"{pending} pending{eta}  {best}{self.tracking}"
        )

    def tick(self, running: int, pending: int, *, retries: int = 0, unsent: int = 0) -> None:
        """Called on every scheduler step; prints at most every `every` seconds (at once when
        the tracking server's state changes, so an outage is never silent)."""
        tracking = (
            f"  tracking server unreachable: {unsent} writes queued, {retries} retries"
            if unsent
            else ""
        )
        changed, self.tracking = tracking != self.tracking, tracking
        if changed or time.time() - self.last >= self.every:
            self.last = time.time()
            self.say(self.status(running, pending))

    def decided(
        self, number: int, d: Decision, result: dict[str, Any], running: int, pending: int
    ) -> None:
        self.counts[d.outcome] += 1
        if d.outcome == Outcome.INTERRUPTED:
            return
        vals = ""
        if d.outcome == Outcome.COMPLETE:
            parts = []
            for o in self.space.objectives:
                v = result.get(o.name)
                assert finite(v)  # a COMPLETE trial's objectives are all finite (`Decision`)
                parts.append(f"{o.name} {v:.4g}")
                old = self.best.get(o.name)
                if old is None or (v > old[0] if o.mode == "max" else v < old[0]):
                    self.best[o.name] = (v, number)
            vals = "  " + "  ".join(parts)
        why = f"  ({d.reason})" if d.reason else ""
        self.say(f"  trial #{number} {d.outcome.value:<8} after {d.epochs} epochs{vals}{why}")
        self.say(self.status(running, pending))
        self.last = time.time()
