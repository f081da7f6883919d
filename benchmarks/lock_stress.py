"""Stress of the one-driver lock: `kill -9` of a search's driver at a random moment among its
trials, then two `--resume` of it started a random fraction of a second apart, round after
round, under CPU load, on SQLite and on a real PostgreSQL server.

Each round must end with one resume exiting 0 and the other refused in one line (exit 2), or —
when the first had already finished — both 0; and the stores exactly consistent
(`tests.search.consistency.assert_consistent`: every Optuna trial finished, one run per trial,
none RUNNING, no metric step twice). A round that ends otherwise prints both drivers' last
lines: the symptom to explain. Run from the project root (needs the dev extra, and Debian's
`postgresql` for the second backend):

    python benchmarks/lock_stress.py --rounds 20 --backend sqlite --backend postgresql
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remedies.results.report import load_study  # noqa: E402
from remedies.stores import tracking  # noqa: E402
from tests.conftest import postgres_server, start_mlflow_server  # noqa: E402
from tests.search.consistency import assert_consistent  # noqa: E402
from tests.search.test_faults import EXE, space_file, wait_for  # noqa: E402


def burn(stop: float) -> None:
    """One core busy until `stop` (time.time()): the load the flake was seen under."""
    x = 0
    while time.time() < stop:
        x = (x * 31 + 7) % 1_000_003


@contextmanager
def cpu_load(cores: int, seconds: float):
    procs = [
        multiprocessing.Process(target=burn, args=(time.time() + seconds,)) for _ in range(cores)
    ]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()


def one_round(
    d: Path, storage: str, uri: str, name: str, rng: random.Random, n: int, epochs: int
) -> tuple[bool, str]:
    sp = space_file(d, name, n=n, epochs=epochs)
    args = [EXE, "search", str(sp), "--name", name, "--tracking-uri", uri, "--storage", storage,
            "--quiet"]  # fmt: skip
    first = subprocess.Popen(args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study_at = storage if "://" in storage else str(d / storage)
    wait_for(first, among_trials(study_at, name, uri), timeout=600)
    time.sleep(rng.uniform(0.0, 3.0))  # a random moment among the trials
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    gap = rng.uniform(0.0, 1.5)
    resumes = [
        subprocess.Popen(
            [*args, "--resume"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
    ]
    time.sleep(gap)
    resumes.append(
        subprocess.Popen(
            [*args, "--resume"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
    )
    outs = [p.communicate(timeout=900) for p in resumes]
    codes = [p.returncode for p in resumes]
    tails = " | ".join(f"exit {c}: {e.strip().splitlines()[-1] if e.strip() else ''}"
                       for c, (_, e) in zip(codes, outs))  # fmt: skip
    ok = sorted(codes) in ([0, 2], [0, 0])
    if ok:
        try:
            assert_consistent(study_at, uri, name, name, n)
        except AssertionError as e:
            return False, f"gap {gap:.2f} s; {tails}; inconsistent: {e}"
    return ok, f"gap {gap:.2f} s; {tails}"


def among_trials(storage: str, name: str, uri: str):
    """A trial is running with epochs logged (the driver is among its trials)."""

    def cond() -> bool:
        try:
            ts = load_study(name, storage).trials
        except Exception:  # not created yet
            return False
        return any(
            t.state.name == "RUNNING"
            and t.user_attrs.get("mlflow_run_id")
            and len(tracking.metric_history(uri, t.user_attrs["mlflow_run_id"], "epoch_time_s"))
            >= 2
            for t in ts
        )

    return cond


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    ap.add_argument("--load", type=int, default=1, help="busy cores beside the search (1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=4, help="trials per search (4)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs per trial (30)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    failed = 0
    with ExitStack() as stack:
        d = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lock-stress-")))
        server = start_mlflow_server(d / "mlflow")
        stack.callback(server.stop)
        backends = a.backend or ["sqlite"]
        pg = (
            stack.enter_context(contextmanager(postgres_server)())
            if "postgresql" in backends
            else None
        )
        wins = dict.fromkeys(backends, 0)
        for k in range(a.rounds):  # the backends take turns: a cut-short run has seen both
            for backend in backends:
                rd = d / f"{backend}-{k}"
                rd.mkdir()
                storage = pg if backend == "postgresql" else "studies.db"
                name = f"stress{k}"
                t0 = time.time()
                with cpu_load(a.load, 1200):
                    ok, what = one_round(rd, storage, server.uri, name, rng, a.trials, a.epochs)
                wins[backend] += ok
                failed += not ok
                print(f"{backend} round {k + 1}: {'ok' if ok else 'FAILED'} "
                      f"({time.time() - t0:.0f} s; {what})", flush=True)  # fmt: skip
        for backend in backends:
            print(f"{backend}: {wins[backend]} of {a.rounds} rounds passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
