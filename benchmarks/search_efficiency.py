"""Sampler efficiency: TPE vs random search on the quickstart space, several seeds.

For each seed, both samplers run `--trials` trials; the hypervolume (val_accuracy max, Keskar
sharpness min; reference point: accuracy 0, 1.1 × the largest sharpness seen in any run) is
tracked after every trial. Reported: the trials TPE needs to reach random search's final
hypervolume, as a fraction of random's trial count (goal ≤ 0.5), per seed and in the median.

Trials run in this process through Optuna directly (the same define-by-run space, resolve and
trainer the service uses), without Ray and ASHA, so the comparison is about the samplers only.
`--set` shrinks the trials (e.g. `--set train.epochs=6 --set data.num_samples=2000`).

    python benchmarks/search_efficiency.py [--seeds 0 1 2 3 4] [--trials 16] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import optuna


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="search_spaces/quickstart.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = ap.parse_args()

    import torch

    from remedies.config import apply_overrides, parse_config
    from remedies.data import load_data
    from remedies.service.optuna_space import define_by_run, make_sampler
    from remedies.service.report import hypervolume_2d
    from remedies.service.space import load_space, resolve

    torch.set_num_threads(1)  # as a service trial with resources.cpu = 1
    space = load_space(args.space)
    space.base = apply_overrides(space.base, args.set)
    load_data(parse_config(space.base).data)
    sharp = space.objectives[1].name

    def run(sampler_name: str, seed: int) -> list[tuple[float, float]]:
        space.sampler.name, space.sampler.seed = sampler_name, seed  # type: ignore[assignment]
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=make_sampler(space))  # fmt: skip
        dbr = define_by_run(space)
        from remedies.trainer import train

        pts = []
        for _ in range(args.trials):
            t = study.ask()
            cfg = parse_config(resolve(space, dbr(t)))
            r = train(cfg, progress=False)
            s = r.sharpness.get(sharp, math.nan)
            if r.diverged or not math.isfinite(s):
                study.tell(t, state=optuna.trial.TrialState.FAIL)
                pts.append((math.nan, math.nan))
            else:
                study.tell(t, [r.val_accuracy, s])
                pts.append((r.val_accuracy, s))
        return pts

    t0 = time.time()
    runs = {}
    for seed in args.seeds:
        for name in ("random", "tpe"):
            runs[name, seed] = run(name, seed)
            print(f"{name:>6} seed {seed}: done ({time.time() - t0:.0f}s)", flush=True)
    smax = max(s for pts in runs.values() for _, s in pts if math.isfinite(s))
    ref = [0.0, -1.1 * smax]

    def hv_curve(pts):
        out, seen = [], []
        for a, s in pts:
            if math.isfinite(a):
                seen.append([a, -s])
            out.append(hypervolume_2d(seen, ref))
        return out

    fracs = []
    print(f"\n{'seed':>4} {'random HV':>10} {'TPE HV':>10} {'TPE trials to random final':>27}")
    for seed in args.seeds:
        hr, ht = hv_curve(runs["random", seed]), hv_curve(runs["tpe", seed])
        need = next((i + 1 for i, h in enumerate(ht) if h >= hr[-1]), None)
        frac = need / args.trials if need else math.inf
        fracs.append(frac)
        print(f"{seed:>4} {hr[-1]:>10.2f} {ht[-1]:>10.2f} "
              f"{(str(need) if need else 'never'):>20} ({frac:.2f}×)")  # fmt: skip
    print(f"\nmedian fraction of random's trials TPE needed: {statistics.median(fracs):.2f} "
          f"(goal ≤ 0.5); {args.trials} trials per run, {len(args.seeds)} seeds, "
          f"{time.time() - t0:.0f}s")  # fmt: skip


if __name__ == "__main__":
    main()
