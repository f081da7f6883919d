"""The whole "faster than SB, as accurate" flow, end to end, with the ratios it found.

1. `remedies search SPACE` (default search_spaces/faster_than_sb.yaml): references, then trials;
2. `remedies export NAME --pick RULE` (default "max val_accuracy where speedup_vs_sb >= 2");
3. `remedies train` of the exported recipe, of the search's SB reference config and of plain LB,
   over the same seeds (0 1 2), interleaved seed by seed so that load on a shared machine hits all
   three alike; every config carries the same `train.threads` as the search's trials;
4. prints the table (test accuracy mean ± std, training time) and the ratios against SB, and
   whether the recipe reaches SB's mean test accuracy − 0.5 points at ≥ 2× SB's training speed;
5. the same speed-ups *to SB's accuracy* (MLPerf's time to target): per seed, the target is that
   seed's SB best validation accuracy less one validation standard error, and each run's time to
   target is its training CPU time up to its first epoch at or above it
   (`remedies.results.target`); mean ± std over the seeds, next to the whole-budget ratios.

    python benchmarks/faster_than_sb.py [--space PATH] [--pick RULE] [--seeds 0 1 2]
                                        [--workdir DIR] [--num-samples N]

Timings are training time only (`train_time_s`: the epochs' step loops; no data loading,
evaluation or measures) — ratios measured in this one process, not absolute speeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from to_target import to_target_table  # benchmarks/to_target.py, beside this script


def sh(args: list[str], cwd: Path, check: bool = True) -> str:
    print("$ " + " ".join(f"'{a}'" if " " in a else a for a in args), flush=True)
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0 and check:
        sys.exit(f"failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout if p.returncode == 0 else f"FAILED: {p.stderr.strip()}"


def train(cfg: Path, seed: int, cwd: Path) -> dict:
    out = cwd / f"{cfg.stem}-seed{seed}.json"
    sh(
        [
            "remedies",
            "train",
            str(cfg),
            "--set",
            f"train.seed={seed}",
            "--quiet",
            "--json",
            str(out),
        ],
        cwd,
    )
    return json.loads(out.read_text())


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", type=Path, default=root / "search_spaces/faster_than_sb.yaml")
    ap.add_argument("--pick", default="max val_accuracy where speedup_vs_sb >= 2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=Path("faster_than_sb_run"))
    ap.add_argument("--num-samples", type=int, default=None)
    ap.add_argument(
        "--reuse",
        default=None,
        metavar="NAME",
        help="skip the search: export from search NAME in WORKDIR (another --pick)",
    )
    ap.add_argument("--tag", default="", help="suffix of the re-trained files (a second pick)")
    args = ap.parse_args()
    wd = args.workdir.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    name = args.reuse or f"faster-{time.strftime('%Y%m%d-%H%M%S')}"
    store = ["--storage", str(wd / "studies.db")]

    t0 = time.time()
    extra = ["--num-samples", str(args.num_samples)] if args.num_samples else []
    if args.reuse is None:
        print(
            sh(
                [
                    "remedies",
                    "search",
                    str(args.space.resolve()),
                    "--name",
                    name,
                    *store,
                    "--tracking-uri",
                    f"sqlite:///{wd / 'mlflow.db'}",
                    "--results-dir",
                    str(wd / "ray_results"),
                    "--quiet",
                    *extra,
                ],
                wd,
            )
        )
    search_s = time.time() - t0
    recipe = wd / f"recipe{args.tag}.yaml"
    got = sh(
        ["remedies", "export", name, *store, "--pick", args.pick, "--out", str(recipe)],
        wd,
        check=False,
    )
    if got.startswith("FAILED"):  # the search found no such recipe: that is the answer
        print(got)
        print(sh(["remedies", "report", name, *store], wd).split("references", 1)[-1])
        sys.exit("no recipe to re-train: the search found none satisfying " + args.pick)
    print(recipe.read_text().split("\n", 3)[:3])

    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{wd / 'studies.db'}")
    refs = study.user_attrs["references"]
    for kind in ("sb", "lb"):
        cfg = yaml.safe_dump(refs[kind]["config"], sort_keys=False)
        (wd / f"{kind}{args.tag}.yaml").write_text(cfg)

    runs: dict[str, list[dict]] = {"SB": [], "plain LB": [], "recipe": []}
    for seed in args.seeds:  # interleaved: the machine's load hits all three alike
        runs["SB"].append(train(wd / f"sb{args.tag}.yaml", seed, wd))
        runs["plain LB"].append(train(wd / f"lb{args.tag}.yaml", seed, wd))
        runs["recipe"].append(train(recipe, seed, wd))

    def stats(rs: list[dict], key: str) -> tuple[float, float]:
        v = [r[key] for r in rs]
        return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0

    sb_acc, _ = stats(runs["SB"], "test_accuracy")
    sb_t, _ = stats(runs["SB"], "train_time_s")
    sb_c, _ = stats(runs["SB"], "train_cpu_s")
    print(
        f"\nsearch {name}: {search_s / 60:.1f} min (references + trials); seeds {args.seeds}; "
        f"threads {runs['SB'][0]['config']['train']['threads']}"
    )
    head = f"{'':<9} {'batch':>6} {'epochs':>6} {'test acc %':>15} {'train s (wall)':>15}"
    print(f"{head} {'cpu s':>7} {'× SB wall':>9} {'× SB cpu':>8}")
    for label, rs in runs.items():
        a, sa = stats(rs, "test_accuracy")
        t, st = stats(rs, "train_time_s")
        c, _ = stats(rs, "train_cpu_s")
        print(
            f"{label:<9} {rs[0]['batch_size']:>6} {rs[0]['epochs_run']:>6} {a:>8.2f} ± "
            f"{sa:4.2f} {t:>8.1f} ± {st:4.1f} {c:>7.1f} {sb_t / t:>9.2f} "
            f"{sb_c / c:>8.2f}"
        )
    a, _ = stats(runs["recipe"], "test_accuracy")
    t, _ = stats(runs["recipe"], "train_time_s")
    c, _ = stats(runs["recipe"], "train_cpu_s")
    tt = to_target_table(runs, int(refs["n_val"]), "train_cpu_s")
    x_tt = tt["recipe"]
    ok = a >= sb_acc - 0.5 and bool(x_tt) and min(x_tt) >= 2
    shown = " / ".join(f"{v:.2f}" for v in x_tt) or "not reached"
    print(
        f"recipe vs SB (time to SB's accuracy, CPU): {a - sb_acc:+.2f} points test, "
        f"{shown}× per seed → {'REACHED' if ok else 'NOT reached'} (headline: ≥ SB − 0.5 "
        "points at ≥ 2× time to target on every seed)"
    )
    for clock, x in (("wall clock", sb_t / t), ("CPU time", sb_c / c)):
        ok = a >= sb_acc - 0.5 and x >= 2
        print(
            f"recipe vs SB ({clock}, whole budgets): {a - sb_acc:+.2f} points test, "
            f"{x:.2f}× SB's training speed → {'REACHED' if ok else 'NOT reached'} "
            "(target: ≥ SB − 0.5 points at ≥ 2×)"
        )


if __name__ == "__main__":
    main()
