"""Fairness rules of a search: which trials ASHA may compare when, and which ranges are refused.

Why: ASHA compares every trial's validation accuracy at the same epochs (4, 8, 16, ...). Remedies
that change the learning curve on purpose — an SB warm start, an lr warm-up, a batch ramp, or a
regulariser (augmentation, adversarial training) that trades early accuracy for a better end —
are behind a plain run at those epochs and were cut there, before they could pay off (measured:
an augment-only trial cut at epoch 4, 73–87 % of trials pruned). So each trial is compared only
from the epoch its curve-changing phase is over (`compare_from`); before that it reports no rung
value, and Ray's ASHA then records it at the first rung it reaches after its phase. Each remedy
says where its phase ends (`Remedy.comparable_from`): the search names no remedy.

And a batch below `MIN_BATCH` samples (e.g. `batch_ramp` at factor² below a small batch) makes a
degenerate, stalling run: such ranges are refused before the search starts (`check_batches`).
"""

from __future__ import annotations

from remedies.config import RunConfig
from remedies.engine.schedule import batch_schedule, schedule_context
from remedies.errors import ConfigError
from remedies.search.space import MIN_BATCH, SearchSpace


def compare_from(cfg: RunConfig, n_train: int) -> int:
    """The first epoch at which ASHA may compare this trial with the others (1 = from the start)."""
    remedies, ctx = schedule_context(cfg, n_train)
    end = max((r.comparable_from(ctx) for r in remedies), default=0)
    return max(1, min(end, ctx.epochs))


def check_batches(space: SearchSpace, n_train: int) -> None:
    """Refuse, in one line, a space some trial of which would train on batches below MIN_BATCH."""
    for what, cfg in space.probes:  # typed by parse_space: nothing is rebuilt here
        field = what.split(" ", 1)[0].split("=", 1)[0]
        try:  # a ladder entry that does not split over the workers names the entry
            sched = batch_schedule(cfg, n_train)
        except ConfigError as e:
            if field == "base":
                raise
            raise ConfigError(field, f"{what} is not accepted: {e}") from None
        if sched and min(sched) < MIN_BATCH:
            raise ConfigError(
                field if field != "base" else "base.train.batch_size",
                f"{what} trains on batches of {min(sched)} samples (epochs "
                f"{[i + 1 for i, b in enumerate(sched) if b < MIN_BATCH][:5]}…); "
                f"allowed: every batch ≥ {MIN_BATCH} samples",
            )
