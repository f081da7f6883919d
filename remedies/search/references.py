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
With data-parallel trials (the space's trials use K > 1 workers), SB is also timed on each such
K (`sbspeed` references) and both ratios are wall-clock against SB on its fastest worker count:
the CPU time of K processes is not a time anyone waits for.
Why CPU time on CPU: the references and the trials run minutes apart; on a shared machine the
wall clock of each is inflated by whatever else runs then (measured: SB's reference 93 s in a
search, 40–52 s re-trained minutes later), so wall-clock ratios across time windows mislead.
The process's CPU time over the same loops is what the run itself cost, whatever the load.
  gap_closed    = (acc − acc_LB) / (acc_SB − acc_LB)         validation (selection)
  test_gap_closed                                            the same on test (report only)
`gap_closed` is undefined (None, and the report says so) when SB is not better than LB.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import ray

from remedies.config import config_to_dict, parse_config
from remedies.measures.config import FAMILIES
from remedies.results.target import reach, sb_target
from remedies.search.node_types import gpus_per_trial
from remedies.search.outcome import Decision, Outcome, decide
from remedies.search.placement import driver_bundle, per_worker
from remedies.search.runtime import INTERRUPT, TaskPool, first_line
from remedies.search.scores import KEEP
from remedies.search.space import SearchSpace, base_raw
from remedies.search.study import Study
from remedies.search.trial import TrialSpec, run_trial
from remedies.stores import tracking
from remedies.stores.results_dir import Results

log = logging.getLogger(__name__)


def sb_speed_workers(space: SearchSpace) -> list[int]:
    """The worker counts besides 1 that SB is timed on: those the space's trials train on
    (its probes: every searched end) that split SB's batch evenly."""
    if not space.baselines.sb_speed:
        return []
    ks = {cfg.train.workers for _, cfg in space.probes}
    return sorted(k for k in ks if k > 1 and space.baselines.sb_batch % k == 0)


def reference_raws(space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """(kind, raw run config) of each reference: `sb` at each lr of the sweep (one worker),
    `sbspeed` — SB at the base lr on each other worker count the trials use, timed only — then
    `lb`. Why time SB on K workers: a user running K-worker large batches would run SB on
    however many workers train it fastest (at batch 64 the per-step all-reduce often makes
    more workers slower), and a speed-up over a slower SB than they would run is inflated."""
    b = space.baselines
    raw = base_raw(space)
    raw["remedies"] = {}
    train = dict(raw.get("train") or {})
    lr0 = parse_config(raw).train.lr  # the base's lr, or the run config's default
    train["lr"] = lr0
    out = []
    noise = noise_measure(raw)
    for f in b.lr_factors:
        sb = {**raw, "train": {**train, "batch_size": b.sb_batch, "lr": lr0 * f, "workers": 1}}
        out.append(("sb", {**sb, "measure": noise} if noise else sb))
    for k in sb_speed_workers(space):
        sb = {**raw, "train": {**train, "batch_size": b.sb_batch, "workers": k}}
        out.append(("sbspeed", sb))
    if b.lb:
        out.append(("lb", {**raw, "train": dict(train)}))
    return out


NOISE_SAMPLES = 1000  # B_simple from exact per-sample gradients of a seeded 1000-sample subset


def noise_measure(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The `measure:` section SB references run: the gradient noise scale B_simple alone, for
    McCandlish's bound on how far the batch scales (measured once, on SB's trained point — the
    point the target is taken from). None where it cannot be measured: batch-statistics BN has
    no per-sample gradients."""
    cfg = parse_config(raw)
    if cfg.model.bn == "batch" or cfg.model.factory is not None:
        return None
    section: dict[str, Any] = {f: {"enabled": f == "noise_scale"} for f in FAMILIES}
    return {**section, "max_samples": NOISE_SAMPLES, "bn": "eval"}


def reference_configs(space: SearchSpace, threads: int) -> list[tuple[str, dict[str, Any]]]:
    """(key, complete run config) of each reference, validated once here: `sb-lr<lr>` at each
    lr of the sweep, `sbspeed-w<K>-lr<lr>` for each timed worker count, then `lb-lr<lr>`. All are
    the base without remedies (plain training), with the trials' pinned thread count and no
    measures. The kind is the key up to its first `-`."""
    out = []
    for kind, raw in reference_raws(space):
        cfg = parse_config(raw)  # its measure section is not run (TrialSpec.measure)
        if cfg.train.threads is None:
            cfg.train.threads = max(1, threads)
        w = f"-w{cfg.train.workers}" if kind == "sbspeed" else ""
        out.append((f"{kind}{w}-lr{cfg.train.lr:.3g}", config_to_dict(cfg)))
    return out


def train_reference(
    spec: TrialSpec, shipped: tuple[dict[str, Any], Any] | None, gpu: bool
) -> dict[str, Any]:
    """One reference run (in a Ray task): the trials' own `run_trial` — the same saved state,
    exact resume and MLflow logging — with no measures: only accuracy and time."""

    placement = {"gpu_ids": ",".join(map(str, ray.get_gpu_ids())) or "none"}
    if not gpu:
        placement["gpu_ids"] = "none"
    return run_trial(spec, lambda row: None, placement, shipped)


class References:
    """The search's references, each run once: its record (`reference_runs` in the study: key →
    {kind, lr, run_id, state}) is written before its run starts, so a driver killed anywhere
    leaves runs that the resume finds and continues — a finished reference is never run again,
    one cut off continues from its saved state in its own MLflow run, and none stays RUNNING."""

    def __init__(
        self,
        st: Study,
        space: SearchSpace,
        configs: list[tuple[str, dict[str, Any]]],
        *,
        target: tracking.Target,
        exp_id: str,
        parent: str,
        state_root: Results,
        threads: int,
        data: tuple[dict[str, Any], Any],
        quiet: bool = False,
    ) -> None:
        self.st, self.space, self.configs, self.target = st, space, configs, target
        self.exp_id, self.parent, self.state_root = exp_id, parent, state_root
        self.threads, self.data, self.quiet = threads, data, quiet
        self.records: dict[str, dict[str, Any]] = dict(st.attrs.get("reference_runs") or {})

    def _save(self) -> None:
        self.st.set_study_attr("reference_runs", self.records)

    def _open(self, key: str, cfg: dict[str, Any]) -> str:
        """The reference's one MLflow run: the recorded one, one a killed driver created but
        did not record (found by its tags), or a new one."""
        uri = self.target.uri
        rec = self.records.get(key) or {}
        run_id = rec.get("run_id") or tracking.find_child_run(
            uri, self.exp_id, self.parent, key, tag="reference_key"
        )
        kind = key.split("-", 1)[0]
        if run_id is None:
            tags = {
                "search": self.st.name,
                "role": "reference",
                "reference": kind,
                "reference_key": key,
            }
            run_id = tracking.start_run(
                uri, self.exp_id, f"reference-{key}", tags, parent=self.parent
            )
        else:
            tracking.client(uri).update_run(run_id, status="RUNNING")
        self.records[key] = {
            "kind": kind,
            "lr": cfg["train"]["lr"],
            "run_id": run_id,
            "state": Outcome.RUNNING.value,
            "config": cfg,
        }
        self._save()
        return run_id

    def _decide(self, key: str, d: Decision, res: dict[str, Any] | None) -> None:
        rec = self.records[key]
        got = res or {}
        rec.update(state=d.outcome.value, **{k: got[k] for k in KEEP if k in got})
        if "curve_json" in got:  # every evaluation: its time to the search's target
            rec["curve"] = json.loads(got["curve_json"])
        self._save()  # Optuna's record first: a kill before the close is mended on resume
        tags = {
            "status": d.outcome.value,
            "epochs_run": d.epochs,
            **({"failure": d.reason[:500]} if d.reason else {}),
        }
        tracking.close_run(self.target.uri, rec["run_id"], d.outcome.mlflow_status, tags)

    def close_decided(self) -> None:
        """Runs of references decided before a kill whose MLflow run is still RUNNING."""
        for rec in self.records.values():
            o = Outcome(rec["state"])
            if o.finished and tracking.run_status(self.target.uri, rec["run_id"]) == "RUNNING":
                tracking.close_run(
                    self.target.uri, rec["run_id"], o.mlflow_status, {"status": o.value}
                )

    def run(self) -> dict[str, Any]:
        """Run what is not complete yet (at most `max_concurrent` at once, the trials'
        resources each), and return what the study keeps. Raises ConfigError-free RuntimeError
        naming the reference if one fails (the search cannot score its trials without it).

        A reference that crashes is retried like a trial (`max_failures` times, in its own run,
        from its saved state): the plain-LB reference runs on the trials' K workers, and one
        worker lost to `kill -9`, the OOM killer or a lost node used to end the whole search
        (exit 1, no trial run) where the same loss in a trial only costs a retry."""

        self.close_decided()
        gpu = gpus_per_trial(self.space.resources.gpu)  # as the trials get
        pool = TaskPool(
            train_reference,
            width=self.space.max_concurrent,
            num_cpus=self.space.resources.cpu,
            num_gpus=gpu,
            on_start=self._start,
        )
        shipped = pool.put(self.data)
        args = self._submit(pool, shipped, gpu)
        failed: list[str] = []
        try:
            failed = self._collect(pool, args, shipped, gpu)
        except KeyboardInterrupt:
            INTERRUPT.requested = True
        if INTERRUPT.requested:
            for key, _spec in pool.cancel():
                if key in self.records:
                    self._decide(key, decide(None, [], interrupted=True), None)
            raise KeyboardInterrupt
        if failed:
            raise ReferenceFailed("; ".join(failed))
        return self.summary()

    def _submit(
        self, pool: TaskPool, shipped: Any, gpu: float
    ) -> dict[str, tuple[TrialSpec, dict[str, Any] | None]]:
        """Every reference not complete yet, submitted; each one's spec and task options."""
        todo = [
            (k, c)
            for k, c in self.configs
            if (self.records.get(k) or {}).get("state") != Outcome.COMPLETE.value
        ]
        args: dict[str, tuple[TrialSpec, dict[str, Any] | None]] = {}
        for key, cfg in todo:
            spec = TrialSpec(
                number=-1,
                run_id="",
                config=cfg,
                space=self.space,
                target=self.target,
                measure=bool(cfg["measure"].get("noise_scale", {}).get("enabled")),
                state_dir=self.state_root.child(key).uri,
            )
            opts = None
            if parse_config(cfg).train.workers > 1:  # plain LB on the trials' K workers
                spec.per_worker = per_worker(self.space, gpu)
                d = driver_bundle(dict(ray.cluster_resources()))
                res = {k: v for k, v in d.items() if k != "CPU"}
                opts = {"num_cpus": d["CPU"], "num_gpus": 0, "resources": res}
            args[key] = (spec, opts)
            pool.submit((key, spec), spec, shipped, gpu > 0, options=opts)
        return args

    def _collect(
        self,
        pool: TaskPool,
        args: dict[str, tuple[TrialSpec, dict[str, Any] | None]],
        shipped: Any,
        gpu: float,
    ) -> list[str]:
        """Each reference decided as it ends, a crashed one resubmitted up to `max_failures`
        times; the ones that failed for good, one line each."""
        failed: list[str] = []
        retries: dict[str, int] = {}
        while len(pool):
            got = pool.next_done(timeout=1.0)
            if got is None:
                continue
            (key, spec), res, err = got
            if err is not None and retries.get(key, 0) < self.space.max_failures:
                retries[key] = retries.get(key, 0) + 1
                log.warning(
                    "reference %s crashed (%s); retry %d of %d from its saved state",
                    key,
                    first_line(err),
                    retries[key],
                    self.space.max_failures,
                )
                spec, opts = args[key]  # the same run: `run_trial` tags the attempt
                pool.submit((key, spec), spec, shipped, gpu > 0, options=opts, first=True)
                continue
            if err is not None:
                self._decide(key, decide(None, [], error=first_line(err)), None)
                failed.append(f"{key}: {first_line(err)}")
                continue
            self._decide(key, decide(res, ["val_accuracy"]), res)
            self.state_root.child(key).remove()
            if not self.quiet:
                print(
                    f"reference {key} (batch {res['batch_size']}): val "
                    f"{res['val_accuracy']:.2f} %, test {res['test_accuracy']:.2f} %, "
                    f"train {res['train_time_s']:.1f} s on {res['threads']} thread(s)",
                    file=sys.stderr,
                    flush=True,
                )
        return failed

    def _start(self, item: tuple[str, TrialSpec]) -> None:
        """Just before a reference starts: its MLflow run is opened (and recorded) then, not
        earlier, so a reference waiting for a slot has no RUNNING run yet."""
        key, spec = item
        if not spec.run_id:
            spec.run_id = self._open(key, spec.config)

    def summary(self) -> dict[str, Any]:
        recs = [dict(r, key=k) for k, r in self.records.items()]
        sbs = [r for r in recs if r["kind"] == "sb"]
        best = max(sbs, key=lambda r: r["val_accuracy"])
        lb = next((r for r in recs if r["kind"] == "lb"), None)
        speed = [r for r in recs if r["kind"] == "sbspeed"]
        for r in sbs:
            tracking.set_tags(self.target.uri, r["run_id"], {"selected": r is best})
        splits = self.data[1]
        refs: dict[str, Any] = {
            "sb": _short(best),
            "lb": _short(lb) if lb else None,
            "sb_sweep": [_short(r) for r in sbs],
            "sb_speed": [_short(r) for r in speed],
            "threads": self.threads,
            "n_val": int(len(splits.y_val)),
            "n_test": int(len(splits.y_test)),
        }
        spec = self.space.baselines.target
        tgt = sb_target(best.get("curve") or [], refs["n_val"], spec.tolerance, spec.accuracy)
        refs["target"] = tgt.as_dict() if tgt else None
        sb_reach = reach(best.get("curve"), tgt.accuracy) if tgt else None
        tracking.log_metrics(
            self.target.uri,
            self.parent,
            {
                "sb_val_accuracy": best["val_accuracy"],
                "sb_test_accuracy": best["test_accuracy"],
                "sb_train_time_s": best["train_time_s"],
                **({"target_val_accuracy": tgt.accuracy} if tgt else {}),
                **({"sb_steps_to_target": sb_reach.steps} if sb_reach else {}),
                **({"sb_b_simple": best["noise_scale"]} if best.get("noise_scale") else {}),
                **(
                    {
                        "lb_val_accuracy": lb["val_accuracy"],
                        "lb_test_accuracy": lb["test_accuracy"],
                        "lb_train_time_s": lb["train_time_s"],
                    }
                    if lb
                    else {}
                ),
            },
        )
        return refs


class ReferenceFailed(RuntimeError):
    """A reference run failed: the search cannot score its trials (its run says why)."""


def _short(r: dict[str, Any]) -> dict[str, Any]:
    """What the study keeps of a reference: its results and its complete run config (so it can
    be re-trained with `remedies train`, e.g. over more seeds)."""
    workers = int(((r.get("config") or {}).get("train") or {}).get("workers") or 1)
    keep = ("kind", "run_id", "lr", "config", "curve", *KEEP)
    return {**{k: r.get(k) for k in keep}, "workers": workers}
