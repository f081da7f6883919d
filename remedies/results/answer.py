"""The user's question, answered from a search: as accurate as small batch — how much faster?

Reads the study only (its `references` attribute and each trial's `metrics`), so it works after
the driver is gone. Three things:
  * `Rule`: `--pick "max val_accuracy where speedup_vs_sb >= 2 and gap_closed >= 1"` — a choice
    among the completed trials in the terms the user asks in;
  * `answer_line`: "best recipe: trial 7, 79.1 % test (SB 78.7 %), 2.3× faster than SB to SB's
    accuracy" — time to target (`remedies.results.target`), the whole-budget ratio beside it;
  * `references_text`: the references and the validation standard error, so a 0.5-point
    difference can be read against the noise of the split it was selected on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from remedies.errors import ConfigError
from remedies.results.evidence_report import with_sharpness_warning
from remedies.results.target import fastest_sb, reach, stderr_points
from remedies.stats import finite

__all__ = ["MATCH_POINTS", "Rule", "answer_line", "best_recipe", "references_text", "stderr_points"]

MATCH_POINTS = 0.5  # "as accurate as SB": within this many points of SB's accuracy
_COND = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Rule:
    """`max|min METRIC [where METRIC OP NUMBER [and ...]]` over the completed trials."""

    mode: str
    metric: str
    conditions: tuple[tuple[str, str, float], ...] = ()

    @staticmethod
    def parse(text: str) -> Rule:
        allowed = (
            'allowed: "max|min METRIC [where METRIC >=|<=|>|< NUMBER [and ...]]", e.g. '
            '"max val_accuracy where speedup_vs_sb >= 2"'
        )
        head, _, cond = text.partition(" where ")
        parts = head.split()
        if len(parts) != 2 or parts[0] not in ("max", "min"):
            raise ConfigError("--pick", f"cannot read {text!r}; {allowed}")
        conds = []
        for c in cond.split(" and ") if cond.strip() else []:
            m = _COND.match(c)
            if not m:
                raise ConfigError("--pick", f"cannot read the condition {c.strip()!r}; {allowed}")
            try:
                conds.append((m.group(1), m.group(2), float(m.group(3))))
            except ValueError:
                raise ConfigError("--pick", f"{m.group(3)!r} is not a number; {allowed}") from None
        return Rule(parts[0], parts[1], tuple(conds))

    def holds(self, row: dict[str, Any]) -> bool:
        for name, op, v in self.conditions:
            x = metric(row, name)
            if not finite(x):
                return False
            ok = {">=": x >= v, "<=": x <= v, ">": x > v, "<": x < v}[op]
            if not ok:
                return False
        return True

    def choose(self, rows: list[dict[str, Any]], search: str) -> dict[str, Any]:
        """The completed trial the rule picks; one line naming what is missing when none fits."""
        done = [r for r in rows if r["state"] == "COMPLETE"]
        names = {self.metric, *(n for n, _, _ in self.conditions)}
        known = {k for r in done for k in known_metrics(r)}
        if done and (unknown := sorted(names - known)):
            raise ConfigError(
                "--pick",
                f"{', '.join(unknown)} is not a metric of search "
                f"{search!r}; allowed: {', '.join(sorted(known))}",
            )
        ok = [r for r in done if self.holds(r) and finite(metric(r, self.metric))]
        if not ok:
            raise ConfigError(
                "--pick",
                f"no completed trial of {search!r} satisfies {self.text()} ({len(done)} completed)",
            )
        sign = 1 if self.mode == "max" else -1
        return max(ok, key=lambda r: sign * metric(r, self.metric))  # type: ignore[operator]

    def text(self) -> str:
        conds = " and ".join(f"{n} {op} {v:g}" for n, op, v in self.conditions)
        return f"{self.mode} {self.metric}" + (f" where {conds}" if conds else "")


def metric(row: dict[str, Any], name: str) -> float | None:
    """A trial's value of `name`: an objective, a sharpness measure, a result or a metric."""
    for d in (row.get("objectives") or {}, row.get("sharpness") or {}, row.get("metrics") or {}):
        if name in d:
            return d[name]
    v = row.get(name)
    return v if finite(v) else None


def known_metrics(row: dict[str, Any]) -> set[str]:
    out = {k for d in ("objectives", "sharpness", "metrics") for k in (row.get(d) or {})}
    return out | {
        k for k in ("val_accuracy", "train_accuracy", "test_accuracy") if finite(row.get(k))
    }


def best_recipe(
    rows: list[dict[str, Any]], refs: dict[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """The fastest completed trial to SB's accuracy — the search's target (True) — or, when no
    trial reached it, the most accurate one (False). A search from before targets: the fastest
    within MATCH_POINTS of SB's final validation accuracy, by whole budgets."""
    done = [r for r in rows if r["state"] == "COMPLETE" and finite(r.get("val_accuracy"))]
    if refs.get("target"):
        match = [r for r in done if reached(r)]
    else:
        done = [r for r in done if finite(metric(r, "speedup_vs_sb"))]
        match = [r for r in done if r["val_accuracy"] >= refs["sb"]["val_accuracy"] - MATCH_POINTS]
    if not done:
        return None, False
    if match:
        return max(match, key=lambda r: metric(r, "speedup_vs_sb")), True  # type: ignore[arg-type,return-value]
    return max(done, key=lambda r: r["val_accuracy"]), False


@with_sharpness_warning  # "— WARNING: sharpness did NOT predict generalisation …" where so
def answer_line(rows: list[dict[str, Any]], refs: dict[str, Any] | None) -> str:
    if not refs:
        return "no answer: this search ran without baselines (baselines: {enabled: false})"
    sb = refs["sb"]
    r, matched = best_recipe(rows, refs)
    if r is None:
        return (
            f"no answer: no trial completed (SB {sb['test_accuracy']:.1f} % test, "
            f"{sb['train_time_s']:.1f} s)"
        )
    tgt = refs.get("target")
    se = stderr_points(sb["val_accuracy"], int(refs.get("n_val") or 0))
    spread = f"± {se:.1f} validation SE" if math.isfinite(se) else "spread unknown"
    line = (
        f"best recipe: trial {r['number']}, {r['test_accuracy']:.1f} % test "
        f"(SB {sb['test_accuracy']:.1f} %), "
    )
    if not tgt:  # a search from before targets: whole budgets only
        line += f"{_speed(metric(r, 'speedup_vs_sb'))} (whole budgets)"
    elif matched:
        line += f"{_speed(metric(r, 'speedup_vs_sb'))} to SB's accuracy" + _scaling(r)
    else:
        line += f"{_speed(metric(r, 'speedup_vs_sb_budget'))} over whole budgets"
    if not matched:
        what = f"the target {tgt['accuracy']:.1f} %" if tgt else f"SB within {MATCH_POINTS} points"
        return line + (
            f" — no trial reached {what} (best val {r['val_accuracy']:.1f} %, "
            f"SB {sb['val_accuracy']:.1f} %, {spread})"
        )
    return line + f" (val {r['val_accuracy']:.1f} %, SB {sb['val_accuracy']:.1f} %, {spread})"


def reached(r: dict[str, Any]) -> bool:
    """The trial reached the search's target (its `speedup_vs_sb` is then to that target)."""
    return metric(r, "reached_target") == 1 and finite(metric(r, "speedup_vs_sb"))


def _scaling(r: dict[str, Any]) -> str:
    """ "; whole budget 3.1×, 4.6× fewer steps at 10× the batch (efficiency 0.46)"."""
    parts = []
    if finite(w := metric(r, "speedup_vs_sb_budget")):
        parts.append(f"whole budget {w:.2f}×")
    sr, br = metric(r, "steps_ratio_to_target"), metric(r, "batch_ratio")
    if finite(sr) and finite(br):
        flag = " — above the batch ratio, see the report" if sr > br else ""  # type: ignore[operator]
        parts.append(f"{sr:.1f}× fewer steps at {br:.1f}× the batch{flag}")
    return f" ({'; '.join(parts)})" if parts else ""


def _to_target(r: dict[str, Any], tgt: dict[str, Any] | None) -> str:
    """ "; target at epoch 14, 1960 steps, 31.2 s (cpu 30.9 s)" for a reference with a curve."""
    if not tgt or not r.get("curve"):
        return ""
    got = reach(r["curve"], tgt["accuracy"])
    if got is None:
        return "; target not reached"
    return (
        f"; target at epoch {got.epoch:.0f}, {got.steps:.0f} steps, {got.train_time_s:.1f} s "
        f"(cpu {got.train_cpu_s:.1f} s)"
    )


def _speed(x: float | None) -> str:
    if x is None:
        return "speed unknown"
    return f"{x:.2f}× faster than SB" if x >= 1 else f"{x:.2f}× SB's speed (slower than SB)"


def references_text(refs: dict[str, Any] | None) -> list[str]:
    if not refs:
        return ["references: none (baselines: {enabled: false})"]
    n_val = int(refs.get("n_val") or 0)
    out = [
        f"references (threads {refs.get('threads')}, training time only; validation n = {n_val}):"
    ]
    rows = [
        ("SB" + (" *" if r["run_id"] == refs["sb"]["run_id"] else ""), r) for r in refs["sb_sweep"]
    ]
    rows += [(f"SB on {r['workers']}w", r) for r in refs.get("sb_speed") or []]
    if refs.get("lb"):
        rows.append(("plain LB", refs["lb"]))
    for label, r in rows:
        se = stderr_points(r["val_accuracy"], n_val)
        out.append(
            f"  {label:<9} batch {r['batch_size']:>5}  lr {r['lr']:<8.3g} val "
            f"{r['val_accuracy']:6.2f} ± {se:.2f} %  test {r['test_accuracy']:6.2f} %  "
            f"train {r['train_time_s']:7.1f} s (cpu {r.get('train_cpu_s', 0):.1f} s)  "
            f"({r['epochs_run']} epochs, "
            f"{r['steps']} steps)" + _to_target(r, refs.get("target"))
        )
    out.append(
        "  (* the SB reference: best validation accuracy of the lr sweep; ± is the "
        "validation standard error)"
    )
    if tgt := refs.get("target"):
        out.append(
            f"  target: {tgt['accuracy']:.2f} % validation = SB's best {tgt['sb_best']:.2f} % − "
            f"{tgt['tolerance']:.2f} ({tgt['basis']}); speed-ups are to the first evaluation "
            "at or above it"
        )
        if finite(b := refs["sb"].get("noise_scale")):
            out.append(f"  B_simple of the SB reference (trained point): {b:.0f} samples")
    if refs.get("sb_speed"):
        w, t = fastest_sb(refs)
        out.append(
            f"  (speed-ups are wall clock against SB on its fastest worker count: {w} "
            f"worker{'s' if w > 1 else ''}, {t:.1f} s; the SB on K workers runs are timed only)"
        )
    lb = refs.get("lb")
    if lb and refs["sb"]["val_accuracy"] <= lb["val_accuracy"]:
        out.append(
            "  gap_closed is undefined: SB is not above plain LB on validation — there "
            "is no gap to close; the question is speed alone"
        )
    return out
