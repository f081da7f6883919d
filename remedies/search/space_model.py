"""The typed search space: what a space file may hold (pydantic models, validated once by
`space.parse_space`). See `space.py` for the file format and why everything is checked first."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from remedies.config import RunConfig

# what every finished trial reports besides its measures (remedies.search.trial.run_trial)
RESULT_METRICS = (
    "val_accuracy",
    "train_accuracy",
    "test_accuracy",
    "gap",
    "val_loss",
    "train_loss",
    "wall_time_s",
    "train_time_s",
    "train_cpu_s",
    "measure_time_s",
    "epochs",
    "steps",
)
# what a trial reports only when the search ran its baselines (remedies.search.references)
REFERENCE_METRICS = (
    "speedup_vs_sb",
    "speedup_vs_sb_wall",
    "speedup_vs_sb_budget",
    "steps_ratio_vs_sb",
    "time_to_target_s",
    "steps_to_target",
    "steps_ratio_to_target",
    "batch_ratio",
    "scaling_efficiency",
    "steps_ratio_bound",
    "gap_closed",
    "test_gap_closed",
)
MIN_BATCH = 16  # a smaller batch is a degenerate run: noisy BN statistics, stalled trials
SAMPLERS = ("tpe", "nsga2", "gp", "random")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Strict):
    """One searched value: float/int (linear or log) or a categorical choice."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None  # int/float grid step (not with log)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dist:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("categorical takes 'choices', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be ≤ high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("'step' cannot be combined with log: true")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("int bounds must be whole numbers")
        return self

    def ends(self) -> list[Any]:
        """The values to probe the run config with at validation time: both ends of a range
        (every value between is accepted when they are), or every categorical choice (each is a
        separate value, so a bad one in the middle of the list must fail here too)."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        assert self.low is not None and self.high is not None  # _check: numeric types have both
        return [cast(self.low), cast(self.high)]


Value = Dist | Any  # a remedy parameter: a distribution, or a constant


class RemedyChoice(_Strict):
    """A remedy the sampler may switch on; its params are sampled only when it is on."""

    always: bool = False  # on in every trial (then only its params are searched)
    params: dict[str, Any] = {}


class Objective(_Strict):
    # a result metric (val_accuracy, gap, ...) or a key the base's measure section produces
    # (keskar_full_eps1e-03, ...); checked against that section by parse_space, which has it
    name: str = Field(min_length=1)
    mode: Literal["max", "min"]
    weight: float = Field(1.0, gt=0)  # used only by scalarize


class Sampler(_Strict):
    name: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int = Field(0, ge=0)
    n_startup_trials: int = Field(6, ge=1)  # random trials before TPE/GP model the space
    population_size: int = Field(50, ge=2)  # nsga2 only


class Asha(_Strict):
    enabled: bool = True
    grace_period: int = Field(2, ge=1)  # epochs every trial gets before it may be stopped
    reduction_factor: float = Field(2.0, gt=1.0)


class CheckpointEvery(_Strict):
    """How often a trial saves its training state (weights, optimiser, RNG, epoch, remedy state)
    to the results store: a retried trial continues from the last one, so a lost node costs at
    most the work since. Its metrics reach MLflow with each save (never a step logged twice);
    ASHA's rungs and the last epoch always save."""

    epochs: int = Field(1, ge=1)
    minutes: float | None = Field(None, gt=0)  # also after this long, whatever the epochs


class TargetSpec(_Strict):
    """What every run is timed to (`remedies.results.target`): the SB reference's best validation
    accuracy less `tolerance` — `se` (one standard error of it on the validation split, the
    default) or a number of points ≥ 0 — or, when set, an absolute validation `accuracy`."""

    tolerance: Literal["se"] | float = "se"
    accuracy: float | None = None

    @model_validator(mode="after")
    def _range(self) -> TargetSpec:
        if isinstance(self.tolerance, float) and not self.tolerance >= 0:
            raise ValueError(
                f"tolerance must be 'se' or a number of points ≥ 0, got {self.tolerance}"
            )
        if self.accuracy is not None and not 0 < self.accuracy <= 100:
            raise ValueError(f"accuracy must be in (0, 100] (a percentage), got {self.accuracy}")
        return self


class Baselines(_Strict):
    """The references every search runs first, on the same data, hardware, seed and threads as
    its trials: a small-batch (SB) run at `sb_batch` with a small lr sweep (the base lr times each
    of `lr_factors`; the best by validation accuracy is *the* SB reference — an untuned baseline
    exaggerates gaps, Shallue et al. 2018) and plain LB (the base without remedies). They give
    every trial its `speedup_vs_sb` and `gap_closed`."""

    enabled: bool = True
    sb_batch: int = Field(64, ge=MIN_BATCH)
    lr_factors: list[float] = Field([0.5, 1.0, 2.0], min_length=1, max_length=6)
    lb: bool = True  # plain LB: needed for gap_closed
    # data-parallel trials: also time SB on each worker count they use (speed-ups are then
    # against SB's fastest); false where SB's own scaling is known and the runs are not wanted
    sb_speed: bool = True
    target: TargetSpec = TargetSpec()

    @model_validator(mode="after")
    def _positive(self) -> Baselines:
        if any(f <= 0 for f in self.lr_factors):
            raise ValueError(f"lr_factors must all be > 0, got {self.lr_factors}")
        return self


class Constraint(_Strict):
    """`{name: speedup_vs_sb, op: ">=", value: 2}`: a trial is feasible when it holds. Given to
    Optuna's constrained samplers (`constraints_func`), honoured by the front and exports."""

    name: str = Field(min_length=1)
    op: Literal[">=", "<="]
    value: float

    @property
    def label(self) -> str:
        return f"{self.name} {self.op} {self.value:g}"

    def violation(self, v: float | None) -> float:
        """Optuna's convention: ≤ 0 feasible; a missing value is infeasible."""

        if v is None or not math.isfinite(v):
            return 1.0
        return (self.value - v) if self.op == ">=" else (v - self.value)


class Resources(_Strict):
    """Per trial, or with `workers` > 1 per worker: a trial then trains on `workers`
    data-parallel workers (Ray Train), each with `cpu` CPUs and `gpu` GPUs; its driver holds
    none of them. Sets the base's `train.workers` (which may be searched instead)."""

    workers: int = Field(1, ge=1, le=4096)
    cpu: float = Field(1.0, gt=0)
    gpu: float | Literal["auto"] = "auto"  # 'auto': 1 GPU per trial when the cluster has GPUs

    @model_validator(mode="after")
    def _gpu(self) -> Resources:
        if isinstance(self.gpu, float) and self.gpu < 0:
            raise ValueError(f"gpu must be ≥ 0 or 'auto', got {self.gpu}")
        return self


DEFAULT_OBJECTIVES = [
    Objective(name="val_accuracy", mode="max"),
    Objective(name="keskar_full_eps1e-03", mode="min"),
]


class SearchSpace(_Strict):
    name: str = Field("search", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: dict[str, Any] = {}
    base_config: Path | None = None  # a run-config YAML to start from (base then overrides it)
    params: dict[str, Dist] = {}
    remedies: dict[str, dict[str, Any] | RemedyChoice | None] = {}
    objectives: list[Objective] = Field(
        default_factory=lambda: list(DEFAULT_OBJECTIVES), min_length=1, max_length=4
    )
    scalarize: bool = False
    sampler: Sampler = Sampler()
    asha: Asha = Asha()
    num_samples: int = Field(12, ge=1)
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)  # Tune retries of a crashed trial (same MLflow run)
    checkpoint_every: CheckpointEvery = CheckpointEvery()
    resources: Resources = Resources()
    baselines: Baselines = Baselines()
    constraints: list[Constraint] = Field(default_factory=list, max_length=4)
    # (what was set, its validated run config) for every corner `parse_space` probed: the base,
    # each parameter end, each remedy probe alone and with each parameter end. Kept typed, so
    # checks that need the data (`fair.check_batches`) read them instead of rebuilding them
    _probes: list[tuple[str, RunConfig]] = PrivateAttr(default_factory=list)

    @property
    def probes(self) -> list[tuple[str, RunConfig]]:
        return self._probes

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def remedy_choices(self) -> dict[str, RemedyChoice]:
        """Normalise the short form `{sam: {rho: dist}}` to RemedyChoice."""
        out = {}
        for name, spec in self.remedies.items():
            if isinstance(spec, RemedyChoice):
                out[name] = spec
            elif spec and ("always" in spec or "params" in spec):
                out[name] = RemedyChoice.model_validate(spec)
            else:
                out[name] = RemedyChoice(params=spec or {})
        return out

    def remedy_param(self, remedy: str, key: str) -> Dist | Any:
        v = self.remedy_choices()[remedy].params[key]
        if isinstance(v, dict) and "type" in v:
            return Dist.model_validate(v)
        return v
