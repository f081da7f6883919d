"""Contract tests over every registry: each registered model, data set and measure family is
checked for what the rest of the code assumes of it, so a new entry that breaks the contract
fails here, not deep inside a search. Every registry refuses an unknown name in one line listing
the known ones. (Each remedy's own contract — defaults validate, bad keys name their field, the
remedy does what it claims — is tests/catalog/test_contract.py.)"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from remedies.catalog import REMEDIES
from remedies.config import DataConfig, parse_config
from remedies.data import DATASETS, Splits, load_data, register_dataset
from remedies.engine.trainer import train
from remedies.errors import ConfigError
from remedies.measures import MeasureConfig, run_measures
from remedies.measures.config import FAMILIES
from remedies.measures.runner import MEASURES
from remedies.models import MODELS, count_parameters, create_model
from remedies.registry import Registry
from tests.docs_check import code_blocks, section, text

# --- every registry: an unknown name is one line listing the known ones -------------------------


@pytest.mark.parametrize("registry", [MODELS, DATASETS, REMEDIES, MEASURES], ids=lambda r: r.kind)
def test_unknown_name_is_one_line_listing_the_known(registry: Registry) -> None:
    assert registry.names(), f"the {registry.kind} registry is empty"
    with pytest.raises(ConfigError) as e:
        registry.get("no_such_entry_zz")
    msg = str(e.value)
    assert "\n" not in msg and f"unknown {registry.kind} 'no_such_entry_zz'" in msg
    assert msg.endswith(", ".join(registry.names())), msg  # every known name, sorted


def test_a_close_name_is_suggested_and_a_taken_name_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(did you mean mnist1d\b"):
        DATASETS.get("mnist1", "data.name")
    with pytest.raises(ValueError, match="duplicate data set name 'mnist1d'"):
        register_dataset("mnist1d", DATASETS.get("mnist1d").read)


# --- models -------------------------------------------------------------------------------------

# the input each network was built for (Keskar et al. Table 1); a new model adds its own
INPUT_SHAPES = {
    "F1": (1, 28, 28),
    "F2": (360,),
    "C1": (3, 32, 32),
    "C2": (3, 32, 32),
    "C3": (3, 32, 32),
    "C4": (3, 32, 32),
}


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_model_maps_its_input_to_logits_and_every_parameter_learns(name: str, bn: str) -> None:
    assert name in INPUT_SHAPES, f"model {name} has no input shape in INPUT_SHAPES"
    shape, classes = INPUT_SHAPES[name], 7
    torch.manual_seed(0)
    model = create_model(name, shape, classes, bn=bn, width=0.05)
    assert isinstance(model, nn.Module) and count_parameters(model) > 0
    x, y = torch.randn(4, *shape), torch.randint(0, classes, (4,))
    model.train()
    logits = model(x)
    assert logits.shape == (4, classes) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, y).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead, f"{name}: parameters with no gradient: {dead}"
    n = 1 if bn == "running" else 4  # running statistics: one sample is enough in eval mode
    with torch.no_grad():
        assert model.eval()(x[:n]).shape == (n, classes)


def test_an_image_model_refuses_vector_data_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^model\.name: C1 needs image-shaped samples[^\n]*$"):
        create_model("C1", (40,), 10)


# --- data sets ----------------------------------------------------------------------------------

FASHION = Path("/usr/share/datasets/fashion-mnist")
# sets that must load here with no path and no download (the rest may skip, in one line)
OFFLINE = {"mnist1d"} | ({"fashion_mnist"} if FASHION.is_dir() else set())


def check_splits(s: Splits, fixed_classes: int | None) -> None:
    """The contract the trainer relies on, for every split."""
    assert isinstance(s, Splits) and s.num_classes >= 2
    if fixed_classes is not None:
        assert s.num_classes == fixed_classes
    for part in ("train", "val", "test"):
        x, y = getattr(s, f"x_{part}"), getattr(s, f"y_{part}")
        assert len(x) == len(y) > 0, part
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == s.input_shape, part
        assert torch.isfinite(x).all(), part
        assert y.dtype == torch.int64 and y.dim() == 1, part
        assert 0 <= int(y.min()) and int(y.max()) < s.num_classes, part


@pytest.mark.parametrize("name", DATASETS.names())
def test_data_set_yields_three_matching_splits(name: str, tmp_path: Path) -> None:
    spec = DATASETS.get(name)
    if spec.needs_path:
        pytest.skip(f"{name} needs data.path (user-supplied data)")
    cfg = DataConfig(name=name, num_samples=500, subset=600, cache_dir=tmp_path)
    try:
        splits = load_data(cfg)
    except ConfigError as e:
        # a set that needs a copy it cannot find says so in one line naming data.path
        assert name not in OFFLINE, f"{name} must load offline here: {e}"
        assert str(e).startswith("data.path: ") and "\n" not in str(e), str(e)
        pytest.skip(f"{name}: {e}")
    assert isinstance(splits, Splits)
    check_splits(splits, spec.num_classes)
    again = load_data(cfg)  # the validation split is seeded: every run sees the same one
    assert isinstance(again, Splits) and torch.equal(again.y_val, splits.y_val)


def test_fashion_mnist_is_offline_here_or_skipped_with_the_reason() -> None:
    if not FASHION.is_dir():
        pytest.skip(f"{FASHION} is absent (apt-get install dataset-fashion-mnist)")
    assert "fashion_mnist" in OFFLINE


def test_the_docs_example_data_set_is_one_file_that_works(tmp_path: Path) -> None:
    """docs/library.md's example, run as the file it tells you to write."""
    block = code_blocks(section(text("library.md"), "Adding a built-in data set"), "python")[0]
    assert 6 <= len([ln for ln in block.splitlines() if ln.strip()]) <= 10
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "svhn.npz",
        x_train=rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8),
        y_train=np.arange(50) % 10,
        x_test=rng.integers(0, 256, (20, 3, 8, 8), np.uint8),
        y_test=np.arange(20) % 10,
    )
    name = re.search(r'register_dataset\("(\w+)"', block)[1]
    try:
        exec(compile(block, "svhn.py", "exec"), {"__name__": "remedies.data.sets.svhn"})
        assert name in DATASETS
        splits = load_data(parse_config({"data": {"name": name, "path": str(tmp_path)}}).data)
        assert isinstance(splits, Splits) and splits.input_shape == (3, 8, 8)
        check_splits(splits, 10)
    finally:
        DATASETS._items.pop(name, None)  # leave the registry as the package built it


# --- measure families ---------------------------------------------------------------------------

# small settings per family, and the detail fields that must carry them back
TINY = MeasureConfig(
    keskar={"eps": [1e-3], "iters": 3},
    lambda_max={"k": 2, "max_iter": 30, "tol": 1e-2},
    trace={"probes": 4, "seed": 3},
    adaptive={
        "l2_rho": [0.5],
        "linf_rho": [2e-3],
        "average_rho": [0.05],
        "average_samples": 4,
        "steps": 3,
        "eta": 0.01,
    },
    max_samples=64,
    subset_seed=1,
    chunk_size=32,
    precision="float32",
)
SETTINGS = {
    "keskar": {"eps": 1e-3, "iters": 3, "subspace_dim": None, "solver": "L-BFGS-B"},
    "lambda_max": {"k": 2, "tol": 1e-2, "seed": 0, "solver": "lanczos"},
    "trace": {"probes": 4, "seed": 3, "estimator": "hutchinson-rademacher"},
    "adaptive": {"eta": 0.01, "seed": 0, "scaling": "|w|+eta"},
    "noise_scale": {"estimator": "per-sample gradients (exact)"},
}
COMMON = {"n_samples": 64, "subset_seed": 1, "bn_mode": "running", "dtype": "float32"}


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    cfg = parse_config(
        {
            "data": {"name": "mnist1d", "num_samples": 500},
            "model": {"name": "F1", "width": 0.02},
            "train": {"batch_size": 50, "epochs": 1, "checkpoint": False, "device": "cpu"},
        }
    )
    splits = load_data(cfg.data)
    assert isinstance(splits, Splits)
    result = train(cfg, splits=splits, measure=False, progress=False)
    return result.model, splits.x_train, splits.y_train


def test_every_family_is_registered_and_has_settings_here() -> None:
    assert set(MEASURES.names()) == set(FAMILIES) == set(SETTINGS)


@pytest.mark.parametrize("family", MEASURES.names())
def test_measure_family_is_a_section_with_its_keys(family: str) -> None:
    m = MEASURES.get(family)
    assert m.name == family and isinstance(MeasureConfig().model_dump()[family]["enabled"], bool)
    assert isinstance(getattr(MeasureConfig(), family), m.Config)  # the section is its Config
    keys = m.keys(m.Config())
    assert keys and len(set(keys)) == len(keys) and all(isinstance(k, str) for k in keys)
    if m.key_pattern is not None:  # --measure accepts every key it reports by default
        assert all(re.fullmatch(m.key_pattern, k) for k in keys)


@pytest.mark.parametrize("family", MEASURES.names())
def test_measure_family_gives_finite_values_with_their_settings(family: str, trained) -> None:
    model, x, y = trained
    values, details = run_measures(model, x, y, TINY, names=[family])
    assert values and all(math.isfinite(v) for v in values.values()), values
    assert {d["key"] for d in details} == set(values)
    for d in details:
        assert d["measure"] == family and d["value"] == values[d["key"]]
        want = {**COMMON, **SETTINGS[family]}
        got = {k: d.get(k, "<missing>") for k in want}
        assert got == want, d["key"]
    if family == "adaptive":  # each radius is recorded with the value it produced
        assert {d["rho"] for d in details} == {0.5, 2e-3, 0.05}
        assert {d["steps"] for d in details if "steps" in d} == {3}
        assert {d["samples"] for d in details if "samples" in d} == {4}
