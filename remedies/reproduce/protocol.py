"""What `remedies reproduce` runs: the paper's protocol as typed options and independent runs.

The protocol (Keskar et al. 2017, §2.2 and Appendix B): ADAM for both regimes, SB = 256 and
LB = 10 % of the training set, the same initial weights for the SB/LB pair of a seed (train()
seeds the model's initialisation with `train.seed`), several seeds. Every figure needs more runs
(Fig. 4: a range of batch sizes; Fig. 5: LB warm-started from the SB iterate after k epochs);
runs that two parts need are trained once (a run is identified by net, seed, batch and k).
Defaults fit a laptop CPU: F1 on MNIST-1D (generated locally, no download), 5000 samples, SB 64
(10 % of its 3600 training samples is 360: the paper's SB of 256 would leave no gap), Fig. 5 at
k ∈ {0, 2, 5} — the settings of the committed report, ≈ 6 min with 2 jobs on a 2-core box. The
paper's nets and data sets keep the paper's SB of 256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remedies.config import apply_overrides, parse_config, resolve_batch_size
from remedies.data import load_data
from remedies.errors import ConfigError
from remedies.models import MODELS

# the paper's data set per net; F1 defaults to MNIST-1D, the offline stand-in for MNIST
DEFAULT_DATA = {
    "F1": "mnist1d",
    "F2": "timit",
    "C1": "cifar10",
    "C2": "cifar10",
    "C3": "cifar100",
    "C4": "cifar100",
}
# how a report names each built-in data set (another name is printed as it is)
DATA_TITLES = {
    "mnist1d": "MNIST-1D",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "timit": "TIMIT",
}
MNIST1D_SAMPLES = 5000  # → 3600 train / 400 validation / 1000 test
MNIST1D_SB = 64
TABLE_KEYS = (
    "keskar_full_eps1e-03",
    "keskar_full_eps5e-04",
    "keskar_sub100_eps1e-03",
    "keskar_sub100_eps5e-04",
)


class ReproduceOptions(BaseModel):
    """Everything a reproduction depends on; validated once, recorded in the report."""

    model_config = ConfigDict(extra="forbid")

    nets: list[str] = Field(default=["F1"], min_length=1)
    data: str | None = None  # None: each net's data set (F1 → mnist1d)
    seeds: int = Field(default=5, ge=1, le=100)  # the paper: 5 runs
    epochs: int = Field(default=40, ge=1, le=10_000)  # LB reaches 100 % train accuracy on F1
    # the paper's stopping point rather than a count: every run trains until its whole training
    # set reads ≥ this accuracy (%) or ≤ `loss_floor`, and `epochs` is then the budget
    until_train_acc: float | None = Field(default=None, gt=0.0, le=100.0)
    loss_floor: float | None = Field(default=None, gt=0.0)
    # None: the paper's 256, or 64 when every net trains on MNIST-1D (see the module docstring)
    sb: int | str | None = None
    lb: int | str = "10%"  # the paper's large batch
    # Fig. 4: batch sizes (≥ 6 points; the SB and LB of the table among them are reused);
    # None: SB, 2·SB, 10 %, 20 %, 35 %, 50 %
    batch_sizes: list[int | str] | None = Field(default=None, min_length=2)
    # Fig. 5: SB epochs k before LB takes over for `epochs` more (k = 0 is the plain LB run)
    warm_k: list[int] = Field(default=[0, 2, 5], min_length=1)
    fig_seeds: int = Field(default=1, ge=1, le=100)  # seeds for Fig. 4 and 5
    eps: list[float] = Field(default=[1e-3, 5e-4], min_length=1)
    subspace_dim: int = Field(default=100, ge=1)  # Table 4
    # seed 0's SB/LB pair also gets λ_max, the Hessian trace and the gradient noise scale
    side_by_side: bool = True
    overrides: list[str] = []  # --set key.path=value, applied to every run's config

    @field_validator("nets")
    @classmethod
    def _nets(cls, v: list[str]) -> list[str]:

        for n in v:
            MODELS.get(n, "--nets")  # unknown net: one line listing the known ones
        return v

    @model_validator(mode="after")
    def _defaults(self) -> ReproduceOptions:
        if self.sb is None:
            mnist1d = all(data_of(self, n) == "mnist1d" for n in self.nets)
            self.sb = MNIST1D_SB if mnist1d else 256
        if self.batch_sizes is None:
            two = 2 * self.sb if isinstance(self.sb, int) else "5%"
            self.batch_sizes = list(dict.fromkeys([self.sb, two, "10%", "20%", "35%", "50%"]))
        return self

    @field_validator("warm_k")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        if any(k < 0 for k in v):
            raise ValueError(f"warm-start epochs must be ≥ 0, got {v}")
        return sorted(set(v))


@dataclass(frozen=True)
class RunSpec:
    """One independent training run (a Ray task)."""

    net: str
    seed: int
    batch: int | str
    warm_k: int  # SB epochs before the batch becomes `batch` (0: none)
    config: dict[str, Any] = field(compare=False, hash=False)
    parts: tuple[str, ...] = field(default=(), compare=False, hash=False)  # table, fig4, fig5
    keep_weights: bool = field(default=False, compare=False, hash=False)

    @property
    def name(self) -> str:
        warm = f"-warm{self.warm_k}" if self.warm_k else ""
        return f"{self.net}-s{self.seed}-b{self.batch}{warm}".replace("%", "pct")


def data_of(opts: ReproduceOptions, net: str) -> str:
    return opts.data or DEFAULT_DATA.get(net, "mnist1d")


def data_title(name: str) -> str:
    """`fashion_mnist` → `Fashion-MNIST`: the name a report prints beside the paper's data set."""
    return DATA_TITLES.get(name, name)


def base_config(opts: ReproduceOptions, net: str) -> dict[str, Any]:
    data = data_of(opts, net)
    dcfg: dict[str, Any] = {"name": data}
    if data == "mnist1d":  # --set data.num_samples=… overrides it (overrides apply last)
        dcfg["num_samples"] = MNIST1D_SAMPLES
    train: dict[str, Any] = {
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": opts.epochs,
        "threads": 1,
        "checkpoint": False,
    }
    if stop_rule(opts):
        train["stop"] = stop_rule(opts)
    return {
        "data": dcfg,
        "model": {"name": net},
        "train": train,
        "measure": {"keskar": {"eps": list(opts.eps)}},
    }


def stop_rule(opts: ReproduceOptions) -> dict[str, float]:
    """`train.stop` of every run ({} when the runs train for `epochs`)."""
    rule = {"train_accuracy": opts.until_train_acc, "train_loss": opts.loss_floor}
    return {k: v for k, v in rule.items() if v is not None}


def rule_text(opts: ReproduceOptions) -> str:
    """The stop rule as a report says it, e.g. `≥ 99 % training accuracy`."""
    rule = stop_rule(opts)
    parts = []
    if "train_accuracy" in rule:
        parts.append(f"≥ {rule['train_accuracy']:g} % training accuracy")
    if "train_loss" in rule:
        parts.append(f"training loss ≤ {rule['train_loss']:g}")
    return " or ".join(parts)


def _measure(opts: ReproduceOptions, table: bool, side: bool) -> dict[str, Any]:
    m: dict[str, Any] = {
        "keskar": {"eps": list(opts.eps), "subspace_dims": [opts.subspace_dim] if table else []}
    }
    if side:
        m["lambda_max"] = {"enabled": True, "tol": 1e-2}
        m["trace"] = {"enabled": True, "probes": 20}
        m["noise_scale"] = {"enabled": True}
    return m


def plan(opts: ReproduceOptions) -> list[RunSpec]:
    """Every run the report needs, each once, table runs first (they fill Tables 2–4)."""
    runs: dict[tuple, dict[str, Any]] = {}
    sb, batch_sizes = opts.sb, opts.batch_sizes
    assert sb is not None and batch_sizes is not None  # filled in by ReproduceOptions._defaults

    def need(
        net: str,
        seed: int,
        batch: int | str,
        k: int,
        part: str,
        *,
        table: bool = False,
        side: bool = False,
        weights: bool = False,
    ) -> None:
        key = (net, seed, str(batch), k)
        r = runs.setdefault(
            key,
            {
                "net": net,
                "seed": seed,
                "batch": batch,
                "k": k,
                "parts": [],
                "table": False,
                "side": False,
                "weights": False,
            },
        )
        r["parts"].append(part)
        r["table"] |= table
        r["side"] |= side
        r["weights"] |= weights

    for net in opts.nets:
        for s in range(opts.seeds):
            first = s == 0
            need(
                net, s, sb, 0, "table", table=True, side=first and opts.side_by_side, weights=first
            )
            need(
                net,
                s,
                opts.lb,
                0,
                "table",
                table=True,
                side=first and opts.side_by_side,
                weights=first,
            )
        for s in range(opts.fig_seeds):
            for b in batch_sizes:
                need(net, s, b, 0, "fig4")
            for k in opts.warm_k:
                need(net, s, opts.lb, k, "fig5")
    out = []
    for r in runs.values():
        raw = base_config(opts, r["net"])
        raw["train"]["seed"] = r["seed"]
        raw["train"]["batch_size"] = r["batch"]
        raw["measure"] = _measure(opts, r["table"], r["side"])
        if r["k"]:
            raw["train"]["epochs"] = opts.epochs + r["k"]  # k SB epochs, then `epochs` at LB
            raw["remedies"] = {"warm_start": {"epochs": r["k"], "sb_batch": _int(sb)}}
        raw = apply_overrides(raw, opts.overrides)
        parse_config(raw)  # every run's config is valid before anything starts
        out.append(
            RunSpec(r["net"], r["seed"], r["batch"], r["k"], raw, tuple(r["parts"]), r["weights"])
        )
    return out


def check_batches(specs: list[RunSpec]) -> None:
    """Every batch size fits its training set (the data are loaded once per data config): a
    bad `--sb`/`--batch-sizes` fails here, in one line, not inside a Ray task minutes later."""

    sizes: dict[str, int] = {}
    for spec in specs:
        cfg = parse_config(spec.config)
        key = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
        if key not in sizes:
            sizes[key] = load_data(cfg.data).n_train
        cfg.train.resolve_batch_size(sizes[key])
        if spec.warm_k:
            warm = cfg.remedies["warm_start"]
            assert warm is not None  # validated: the defaults replace a None
            resolve_batch_size(warm["sb_batch"], sizes[key], "--sb")


def _int(b: int | str) -> int:
    if isinstance(b, str):
        raise ConfigError(
            "--sb",
            f"Fig. 5 warm-starts from the SB iterate and needs SB as a "
            f"number of samples, got {b!r}",
        )
    return b
