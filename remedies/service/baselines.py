"""The references every search runs before its trials: small batch (SB) and plain large batch.

Why inside the search: a user keeps a large-batch recipe only if it loses no accuracy against
small batch *and* trains faster. Without references a search ranks trials by accuracy and
sharpness only, and the user had to train SB and LB by hand, on other threads, and line the
numbers up. Here they run on the same data, seed, resources and thread count as the trials, as
tasks of the same Ray instance, each logged as an MLflow run under the search's parent tagged
`role=reference` (never an Optuna trial, so never in the front or an export). The results are
kept in the study (`references` attribute) so `report`, `export` and `--resume` read them there.

Per trial (`scores`):
  speedup_vs_sb = train_cpu_SB / train_cpu_trial            (training only, same threads; on a
                  GPU, or where CPU time was not recorded: train_time, the wall clock)
  speedup_vs_sb_wall = train_time_SB / train_time_trial     (wall clock, always reported)
Why CPU time on CPU: the references and the trials run minutes apart; on a shared machine the
wall clock of each is inflated by whatever else runs then (measured: SB's reference 93 s in a
search, 40–52 s re-trained minutes later), so wall-clock ratios across time windows mislead.
The process's CPU time over the same loops is what the run itself cost, whatever the load.
  gap_closed    = (acc − acc_LB) / (acc_SB − acc_LB)         validation (selection)
  test_gap_closed                                            the same on test (report only)
`gap_closed` is undefined (None, and the report says so) when SB is not better than LB.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from remedies.service import tracking
from remedies.service.space import SearchSpace, base_raw

log = logging.getLogger("remedies.search")

KEEP = ("val_accuracy", "test_accuracy", "train_accuracy", "train_time_s", "train_cpu_s",
        "epochs_run", "steps", "threads", "batch_size", "device", "wall_time_s")  # fmt: skip


def reference_configs(space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """(kind, raw run config) of each reference: `sb` at each lr of the sweep, then `lb`. Both are
    the base without remedies (plain training), with the trials' pinned thread count."""
    b = space.baselines
    raw = base_raw(space)
    raw["remedies"] = {}
    from remedies.config import parse_config

    train = dict(raw.get("train") or {})
    lr0 = parse_config(raw).train.lr  # the base's lr, or the run config's default
    train["lr"] = lr0
    out = []
    for f in b.lr_factors:
        sb = {**raw, "train": {**train, "batch_size": b.sb_batch, "lr": lr0 * f}}
        out.append(("sb", sb))
    if b.lb:
        out.append(("lb", {**raw, "train": dict(train)}))
    return out


def train_reference(raw: dict[str, Any], threads: int, shipped: tuple[dict[str, Any], Any] | None,
                    gpu: bool) -> dict[str, Any]:  # fmt: skip
    """One reference run (in a Ray task): plain training, no measures — only accuracy and time."""
    import os

    from remedies.config import config_to_dict, parse_config
    from remedies.trainer import train

    cfg = parse_config(raw)
    if cfg.train.threads is None:
        cfg.train.threads = max(1, threads)
    full = config_to_dict(cfg)
    if not gpu and cfg.train.device == "auto":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
    same = shipped is not None and shipped[0] == cfg.data.model_dump(mode="json")
    r = train(cfg, splits=shipped[1] if same else None, measure=False,  # type: ignore[index]
              progress=False)  # fmt: skip
    s = r.summary()
    out = {k: s[k] for k in KEEP}
    out.update(lr=cfg.train.lr, config=full,
               history=[{k: v for k, v in h.items() if isinstance(v, (int, float))}
                        for h in s["history"]])  # fmt: skip
    return out


def run_references(space: SearchSpace, *, target: tracking.Target, exp_id: str, parent: str,
                   search: str, threads: int, data: tuple[dict[str, Any], Any],
                   quiet: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run the references as Ray tasks (at most `max_concurrent` at once, `resources` each: what
    the trials get), log each as a reference run, and return what the study keeps."""
    import ray

    from remedies.service.node_types import gpus_per_trial

    gpu = gpus_per_trial(space.resources.gpu)  # as the trials get
    task = ray.remote(num_cpus=space.resources.cpu, num_gpus=gpu, max_retries=0)(train_reference)
    shipped = ray.put(data)
    configs = reference_configs(space)
    runs: list[dict[str, Any]] = [{} for _ in configs]
    pending: dict[Any, int] = {}
    todo = list(range(len(configs)))
    while todo or pending:
        while todo and len(pending) < space.max_concurrent:
            i = todo.pop(0)
            kind, raw = configs[i]
            lr = raw["train"].get("lr")
            tags = {"search": search, "role": "reference", "reference": kind}
            run_id = tracking.start_run(target.uri, exp_id, f"reference-{kind}-lr{lr:.3g}", tags,
                                        parent=parent)  # fmt: skip
            runs[i] = {"kind": kind, "run_id": run_id}
            pending[task.remote(raw, threads, shipped, gpu > 0)] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        try:
            res = ray.get(done[0])
        except Exception as e:
            tracking.close_run(target.uri, runs[i]["run_id"], "FAILED", {"error": repr(e)[:500]})
            raise
        runs[i].update(res)
        _log_run(target.uri, runs[i])
        if not quiet:
            print(f"reference {runs[i]['kind']:>2} (batch {res['batch_size']}, lr {res['lr']:.3g}"
                  f"): val {res['val_accuracy']:.2f} %, test {res['test_accuracy']:.2f} %, "
                  f"train {res['train_time_s']:.1f} s on {res['threads']} thread(s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    sbs = [r for r in runs if r["kind"] == "sb"]
    best = max(sbs, key=lambda r: r["val_accuracy"])
    lb = next((r for r in runs if r["kind"] == "lb"), None)
    for r in sbs:
        tracking.set_tags(target.uri, r["run_id"], {"selected": r is best})
    refs = {"sb": _short(best), "lb": _short(lb) if lb else None,
            "sb_sweep": [_short(r) for r in sbs], "threads": threads,
            "n_val": int(len(data[1].y_val)), "n_test": int(len(data[1].y_test))}  # fmt: skip
    tracking.log_metrics(target.uri, parent, {
        "sb_val_accuracy": best["val_accuracy"], "sb_test_accuracy": best["test_accuracy"],
        "sb_train_time_s": best["train_time_s"],
        **({"lb_val_accuracy": lb["val_accuracy"], "lb_test_accuracy": lb["test_accuracy"],
            "lb_train_time_s": lb["train_time_s"]} if lb else {})})  # fmt: skip
    return refs


def _short(r: dict[str, Any]) -> dict[str, Any]:
    """What the study keeps of a reference: its results and its complete run config (so it can
    be re-trained with `remedies train`, e.g. over more seeds)."""
    return {k: r[k] for k in ("kind", "run_id", "lr", "config", *KEEP)}


def _log_run(uri: str, r: dict[str, Any]) -> None:
    from remedies.config import flatten

    tracking.log_params(uri, r["run_id"], flatten(r["config"]))
    tracking.log_yaml(uri, r["run_id"], r["config"], "config.yaml")
    rows = r["history"]
    tracking.log_metric_rows(uri, r["run_id"], rows, [int(h["epoch"]) for h in rows])
    final = {f"final_{k}": r[k] for k in KEEP if isinstance(r[k], (int, float))}
    tracking.log_metrics(uri, r["run_id"], final, step=r["epochs_run"])
    tracking.close_run(uri, r["run_id"], "FINISHED", {"status": "complete",
                                                      "epochs_run": r["epochs_run"],
                                                      "threads": r["threads"]})  # fmt: skip


def gap_closed(acc: float | None, sb: float, lb: float) -> float | None:
    """(acc − LB) / (SB − LB); None when SB is not above LB (there is no gap to close)."""
    if acc is None or not math.isfinite(acc) or sb <= lb:
        return None
    return (acc - lb) / (sb - lb)


def scores(refs: dict[str, Any] | None, metrics: dict[str, Any]) -> dict[str, float | None]:
    """A trial's reference-relative metrics from its own (`val_accuracy`, `test_accuracy`,
    `train_time_s`) and the references the search ran."""
    if not refs:
        return {}
    sb, lb = refs["sb"], refs.get("lb")
    t = metrics.get("train_time_s")
    out: dict[str, float | None] = {
        "speedup_vs_sb_wall": sb["train_time_s"] / t if t and t > 0 else None}  # fmt: skip
    c, sb_c = metrics.get("train_cpu_s"), sb.get("train_cpu_s")
    on_cpu = str(metrics.get("device", "cpu")) == "cpu" and str(sb.get("device")) == "cpu"
    out["speedup_vs_sb"] = sb_c / c if on_cpu and c and sb_c else out["speedup_vs_sb_wall"]
    if lb:
        out["gap_closed"] = gap_closed(metrics.get("val_accuracy"), sb["val_accuracy"],
                                       lb["val_accuracy"])  # fmt: skip
        out["test_gap_closed"] = gap_closed(metrics.get("test_accuracy"), sb["test_accuracy"],
                                            lb["test_accuracy"])  # fmt: skip
    return out
