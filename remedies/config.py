"""Typed run configs, validated once at the edge.

A run config has five sections — data, model, train, remedies, measure — and every key has a
documented default. Validation turns pydantic's errors into one line naming the field and what is
allowed; nothing deeper in the code re-checks these values.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from remedies.batch_size import FRACTION as _FRACTION
from remedies.batch_size import check_split as check_split
from remedies.batch_size import resolve_batch_size as resolve_batch_size
from remedies.errors import ConfigError, describe
from remedies.measures.config import MeasureConfig
from remedies.measures.registry import measures
from remedies.registry import DATASETS, MODELS, REMEDIES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _builtin_unless_factory(data: Any, default: str) -> Any:
    """A data/model section names the built-in `default` unless it sets a factory (or a name)."""
    if isinstance(data, dict) and data.get("factory") is None and data.get("name") is None:
        return {**data, "name": default}
    return data


class DataConfig(Strict):
    # a built-in data set (remedies.data.DATASETS: mnist1d, npz, mnist, fashion_mnist, idx,
    # cifar10, cifar100, timit), or (factory) your own: see `factory` below and remedies.factories
    name: str | None = None
    # npz file (npz), feature directory (timit), data root (mnist/cifar), IDX folder
    # (fashion_mnist: default Debian's /usr/share/datasets/fashion-mnist; idx: required)
    path: Path | None = None
    num_samples: int = Field(10000, ge=100, le=1_000_000)  # mnist1d: samples generated (80% train)
    # read sets (all but mnist1d): keep the first N training samples (before the validation
    # carve-out) and the same share of the test split — a cheap run on real data
    subset: int | None = Field(None, ge=10)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # carved from the training split, seeded
    split_seed: int = Field(0, ge=0)  # seed of the validation carve-out (fixed across runs)
    max_train: int | None = Field(None, ge=1)  # keep only the first N training samples (cheap runs)
    download: bool = False  # mnist/cifar: fetch (with checksums) when no local copy exists
    cache_dir: Path | None = None  # default: $REMEDIES_CACHE or ~/.cache/remedies
    # classes the model outputs. null: the data set's own count (mnist/mnist1d/cifar10: 10,
    # cifar100: 100), or max label + 1 for npz/timit — and then every class below it must occur
    # in the training labels, so a stray label (99 in 10-class data) is an error, not 100 outputs
    num_classes: int | None = Field(None, ge=2)
    # your own data instead of `name`: "pkg.module:function", called as function(**kwargs), that
    # returns (train, val, test) — each an (x, y) pair of tensors/arrays or a torch Dataset of
    # (x, y) samples (streamed through a DataLoader; then num_classes is required). The splits
    # are used as given: val_fraction, split_seed and max_train do not apply.
    factory: str | None = None
    kwargs: dict[str, Any] = {}
    loader_workers: int = Field(0, ge=0, le=64)  # DataLoader worker processes for Datasets

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        return _builtin_unless_factory(data, "mnist1d")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in DATASETS:
            raise ValueError(f"unknown data set {v!r}; allowed: {', '.join(DATASETS.names())}")
        return v

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.factory is not None:
            if self.name is not None:
                raise ValueError("set either data.name or data.factory, not both")
            _resolve_factory(self.factory, "data.factory")
        if self.name is not None and self.path is None and _needs_path(self.name):
            raise ValueError(f"data.path is required for data.name={self.name!r}")
        return self


def _needs_path(name: str) -> bool:
    return DATASETS.get(name, "data.name").needs_path


class ModelConfig(Strict):
    name: str | None = None  # F1 (default), F2, C1, C2, C3, C4 (see remedies.models)
    # your own network instead of `name`: "pkg.module:function" returning a torch nn.Module,
    # called with kwargs (and input_shape / num_classes when its signature names them); bn and
    # width apply to the built-in networks only
    factory: str | None = None
    kwargs: dict[str, Any] = {}
    # running: PyTorch's running averages at evaluation (what production serves). batch: per-batch
    # statistics at evaluation too, as the paper's Keras code did — but then BN re-normalises
    # away most weight perturbations, and full-space Keskar sharpness on F1/MNIST-1D came out
    # *lower* for LB than SB (measured; see docs/results.md), so it is not the default.
    bn: Literal["batch", "running"] = "running"
    width: float = Field(1.0, gt=0.0, le=8.0)  # multiplies every hidden width / channel count
    # train.workers > 1 only: BN statistics over the global batch (SyncBatchNorm) instead of
    # each worker's slice (= ghost BN at batch_size / workers, the default)
    sync_bn: bool = False

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        return _builtin_unless_factory(data, "F1")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in MODELS:
            raise ValueError(f"unknown model {v!r}; allowed: {', '.join(MODELS.names())}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.factory is not None:
            if self.name is not None:
                raise ValueError("set either model.name or model.factory, not both")
            _resolve_factory(self.factory, "model.factory")
        return self

    @property
    def label(self) -> str:
        """What the run trains, for messages: the built-in name or the factory's path."""
        return self.name or str(self.factory)


def _resolve_factory(path: str, field: str) -> None:
    from remedies.factories import resolve  # here: factories import this module

    resolve(path, field)  # import now: a typo is one line at validation, not a worker's crash


class StopRule(Strict):
    """Train to convergence, as the paper does (≈ 100 % training accuracy), rather than for a
    fixed count: `train.epochs` becomes the budget. Checked after each epoch on the whole
    training set in eval mode, the reading the final `train_accuracy` reports, so the rule and
    the report cannot disagree (the epoch's running accuracy lags it by the epoch's progress)."""

    train_accuracy: float | None = Field(None, gt=0.0, le=100.0)  # stop at ≥ this (%)
    train_loss: float | None = Field(None, gt=0.0)  # or at ≤ this mean cross-entropy

    @model_validator(mode="after")
    def _one(self) -> StopRule:
        if self.train_accuracy is None and self.train_loss is None:
            raise ValueError("needs train_accuracy (%, in (0, 100]) or train_loss (> 0), or both")
        return self

    def met(self, loss: float, accuracy: float) -> bool:
        """Either bound reached (a rule with both stops at whichever comes first)."""
        acc = self.train_accuracy is not None and accuracy >= self.train_accuracy
        return acc or (self.train_loss is not None and loss <= self.train_loss)


class TrainConfig(Strict):
    batch_size: int | str = 256  # samples per step, or a fraction of the training set like "10%"
    epochs: int = Field(20, ge=1, le=100_000)  # with `stop`: the budget, not the count
    stop: StopRule | None = None  # train until converged (see StopRule); null: all `epochs`
    optimizer: Literal["adam", "sgd"] = "adam"  # the paper used ADAM for both regimes
    lr: float = Field(1e-3, gt=0.0, le=10.0)  # Keras' ADAM default, the paper's implied lr
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float = Field(0.0, ge=0.0)  # clip the global grad norm at this value; 0 disables
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    # CPU threads for torch (null: torch's default). CPU results depend on it in the last bits,
    # which training amplifies, so a search pins it per trial and its exports carry it.
    threads: int | None = Field(None, ge=1, le=1024)
    eval_batch_size: int = Field(1000, ge=1)  # chunk size for evaluation passes
    checkpoint: bool = True  # save model + config + metrics to OUT/checkpoint.pt
    # arithmetic of the forward/backward passes (weights, optimiser state and measures stay fp32):
    # auto = bf16 autocast on a CUDA GPU that supports it, else fp32; bf16 on CPU = CPU autocast;
    # fp16 = CUDA autocast with a GradScaler (refused without a CUDA GPU)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False  # wrap the training forward with torch.compile (slow to start on CPU)
    # data-parallel workers (Ray Train's TorchTrainer: gloo on CPU, NCCL on GPU). The global
    # batch stays batch_size, split evenly over the workers; gradients are averaged, so K
    # workers at batch B train as one at B (BN: per-worker statistics unless model.sync_bn)
    workers: int = Field(1, ge=1, le=4096)
    # gradient accumulation: each worker's share of a global batch runs as N micro-batches whose
    # gradients are averaged to the full batch's (BN statistics: per micro-batch = ghost BN).
    # auto: the fewest that fit the GPU's memory (remedies.accumulate); 1 on CPU
    accumulate: Annotated[int, Field(ge=1, le=4096)] | Literal["auto"] = 1

    @property
    def micro_batches(self) -> int:
        """N as far as it is known before a model exists: `auto` promises only a split that
        works, so it is checked as 1 (remedies.engine.accumulate picks among the counts that
        split)."""
        return 1 if self.accumulate == "auto" else self.accumulate

    @field_validator("accumulate", mode="before")
    @classmethod
    def _accumulate(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "auto" and not v.strip().isdigit():
            raise ValueError(f"must be a positive integer or 'auto', got {v!r}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"must be a positive integer or a percentage like '10%', got {v}")
            return v
        m = _FRACTION.match(v)
        if not m or not 0 < float(m.group(1)) <= 100:
            raise ValueError(
                f"must be a positive integer or a percentage in (0%, 100%] like '10%', got {v!r}"
            )
        return v

    def resolve_batch_size(self, n_train: int) -> int:
        """The (global) batch size in samples for a training set of `n_train` samples; refused
        when it does not split evenly over train.workers × train.accumulate."""
        b = resolve_batch_size(self.batch_size, n_train, "train.batch_size")
        check_split(b, self.workers, self.micro_batches)
        return b

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> TrainConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError("train.precision", FP16_NEEDS_CUDA)
        return self


FP16_NEEDS_CUDA = (
    f"fp16 needs a CUDA GPU (a GradScaler'd autocast); allowed here: "
    f"{', '.join(p for p in PRECISIONS if p != 'fp16')}"
)


class RunConfig(Strict):
    """One training run: data → model → train (+ remedies through hooks) → measures."""

    data: DataConfig = Field(default_factory=lambda: DataConfig.model_validate({}))
    model: ModelConfig = Field(default_factory=lambda: ModelConfig.model_validate({}))
    train: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate({}))
    remedies: dict[str, dict[str, Any] | None] = {}  # name → its parameters ({} = defaults)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)

    @field_validator("remedies")
    @classmethod
    def _remedies(cls, v: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        return validate_remedies(v)

    @model_validator(mode="after")
    def _per_sample_measures(self) -> RunConfig:
        batch_bn = self.model.bn == "batch" or self.measure.bn == "train"
        for m in measures():  # e.g. noise_scale: per-sample gradients
            section = getattr(self.measure, m.name, None)
            if m.batch_bn_refusal and batch_bn and section is not None and section.enabled:
                raise ConfigError(f"measure.{m.name}.enabled", m.batch_bn_refusal)
        return self

    @model_validator(mode="after")
    def _sync_bn(self) -> RunConfig:
        if self.model.sync_bn and "ghost_bn" in self.remedies:
            raise ConfigError(
                "model.sync_bn",
                "global BN statistics contradict remedies.ghost_bn "
                "(per-slice statistics); enable one of them",
            )
        return self


# ---------------------------------------------------------------------------- loading & errors


def _format_error(err: ValidationError) -> str:
    e = err.errors()[0]
    inner = (e.get("ctx") or {}).get("error")
    if isinstance(inner, ConfigError):  # raised by a nested validator with its own field path
        return str(inner)
    loc = ".".join(str(p) for p in e["loc"])
    return f"{loc}: {describe(e, _allowed_keys(e['loc']))}"


def _allowed_keys(loc: tuple) -> str:
    model: Any = RunConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return "see docs/config.md for the allowed keys"
        model = field.annotation
    keys = getattr(model, "model_fields", None)
    return f"allowed: {', '.join(keys)}" if keys else "see docs/config.md for the allowed keys"


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict; raise ConfigError (one line) on the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError("config", "must be a YAML mapping with data/model/train sections")
    try:
        return RunConfig.model_validate(raw)
    except ConfigError:
        raise
    except ValidationError as err:
        raise ConfigError("", _format_error(err)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML: `10%` stays a string)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"expected key.path=value, got {item!r}")
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}", f"{p!r} is not a section")
            node = nxt
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("config", f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return raw if raw is not None else {}


def load_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    return parse_config(apply_overrides(read_yaml(path), overrides or []))


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Complete, YAML-safe dict of every resolved value (what checkpoints and exports store)."""
    return cfg.model_dump(mode="json")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1} (for MLflow params and search spaces)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def validate_remedies(raw: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Check names and parameters; return each remedy's complete parameters (defaults filled).
    Each remedy's class carries its own `Config` model, so no catalogue module is named here."""
    out: dict[str, dict[str, Any]] = {}
    owners = []
    for name, params in raw.items():
        cls = REMEDIES.get(name, f"remedies.{name}")
        try:
            cfg = cls.Config.model_validate(params or {})
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            msg = describe(e, f"allowed: {', '.join(cls.Config.model_fields)}")
            field = f"remedies.{name}.{loc}" if loc else f"remedies.{name}"
            raise ConfigError(field, msg) from None
        if cls.replaces_step:
            owners.append(name)
        out[name] = cfg.model_dump(mode="json")
    if len(owners) > 1:
        raise ConfigError(
            "remedies", f"{' and '.join(owners)} each replace the optimiser step; enable only one"
        )
    return out
