"""`noise_scale`: the gradient noise scale B_simple from exact per-sample gradients
(`remedies/measures/noise_scale.py`)."""

from __future__ import annotations

from remedies.measures.noise_scale import NOISE_SCALE_BN, gradient_noise_scale
from remedies.measures.objective import ModelObjective
from remedies.measures.registry import Measure, Record, Section, register_measure

NOISE_SCALE_KEY = "noise_scale"


class NoiseScaleConfig(Section):
    """Gradient noise scale B_simple = tr Σ / ‖G‖² (`noise_scale`; McCandlish et al. 2018): an
    estimate of the critical batch size, from exact per-sample gradients. Needs BN running/none."""

    enabled: bool = False


def keys(nc: NoiseScaleConfig) -> list[str]:
    return [NOISE_SCALE_KEY]


def run(obj: ModelObjective, nc: NoiseScaleConfig, names: set[str] | None) -> list[Record]:
    r = gradient_noise_scale(obj)
    return [
        {
            "key": NOISE_SCALE_KEY,
            "value": r.b_simple,
            "trace_sigma": r.trace_sigma,
            "grad_norm_sq": r.grad_norm_sq,
            "estimator": "per-sample gradients (exact)",
            "vmap_chunk": r.chunk,
            "wall_time_s": r.wall_time_s,
        }
    ]


NOISE_SCALE = register_measure(
    Measure("noise_scale", NoiseScaleConfig, keys, run, batch_bn_refusal=NOISE_SCALE_BN, order=4)
)
