"""A new measure is one file: the code between the rules below is all a gradient-norm measure
needs (what `docs/measures.md`, "Adding a measure", shows). Registered, it runs through
`run_measures`, its keys are in `measure_keys`, `--measure` accepts it, and its config section
validates like a built-in's; unregistered afterwards, so the other tests see the built-ins only."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from pydantic import Field, ValidationError

from remedies.errors import ConfigError
from remedies.measures import (
    MEASURES,
    Measure,
    MeasureConfig,
    Section,
    register_measure,
    run_measures,
)
from remedies.measures.config import FAMILIES, measure_config_model, measure_keys
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Record

# ------------------------------------------------ one file: remedies/measures/families/grad_norm.py


class GradNormConfig(Section):
    """‖∇f‖ at the trained point (`grad_norm`)."""

    enabled: bool = False
    scale: float = Field(default=1.0, gt=0.0)  # reported ‖∇f‖ × scale


def grad_norm_keys(cfg: GradNormConfig) -> list[str]:
    return ["grad_norm"]


def grad_norm(obj: ModelObjective, cfg: GradNormConfig, names: set[str] | None) -> list[Record]:
    f, g = obj.loss_grad(obj.w0)
    return [{"key": "grad_norm", "value": cfg.scale * float(g.norm()), "scale": cfg.scale, "f0": f}]


GRAD_NORM = Measure("grad_norm", GradNormConfig, grad_norm_keys, grad_norm)

# -------------------------------------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[type]:
    register_measure(GRAD_NORM)
    try:
        yield measure_config_model()  # `measure:` with the new section (as at import, in a file)
    finally:
        MEASURES.unregister("grad_norm")


def _problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    return model, torch.randn(24, 4), torch.arange(24) % 3


def test_a_one_file_measure_runs_with_its_section(registered: type) -> None:
    cfg = registered.model_validate(
        {
            "keskar": {"enabled": False},
            "max_samples": 16,
            "grad_norm": {"enabled": True, "scale": 2.0},
        }
    )
    assert measure_keys(cfg) == ["grad_norm"]
    model, x, y = _problem()
    values, details = run_measures(model, x, y, cfg)
    assert (
        list(values) == ["grad_norm"]
        and math.isfinite(values["grad_norm"])
        and values["grad_norm"] > 0
    )
    (d,) = details
    assert d["measure"] == "grad_norm" and d["value"] == values["grad_norm"]
    assert d["scale"] == 2.0 and d["n_samples"] == 16 and d["suspect"] is False  # its settings
    # the section sits after the built-ins and before the shared settings; defaults dump as usual
    fields = list(registered.model_fields)
    assert fields[: len(FAMILIES) + 1] == [*FAMILIES, "grad_norm"] and fields[-1] == "float64_below"
    assert registered().model_dump()["grad_norm"] == {"enabled": False, "scale": 1.0}
    with pytest.raises(ValidationError):  # a typo in its section is refused like a built-in's
        registered.model_validate({"grad_norm": {"scael": 2.0}})


def test_a_one_file_measure_is_a_measure_name(registered: type) -> None:
    model, x, y = _problem()
    values, _ = run_measures(model, x, y, MeasureConfig(), names=["grad_norm"])  # its defaults
    assert list(values) == ["grad_norm"] and math.isfinite(values["grad_norm"])
    assert measure_keys(MeasureConfig()) == measure_keys(MeasureConfig.model_validate({}))
    with pytest.raises(ValueError, match="duplicate measure name 'grad_norm'"):
        register_measure(GRAD_NORM)


def test_unregistered_it_is_gone() -> None:
    assert "grad_norm" not in MEASURES and "grad_norm" not in MeasureConfig.model_fields
    with pytest.raises(ConfigError, match="unknown measure 'grad_norm'"):
        run_measures(*_problem(), MeasureConfig(), names=["grad_norm"])
