"""Sharpness and curvature of a trained model (issue 3): Keskar ε-sharpness, λ_max, Hessian trace,
adaptive sharpness and 1-D interpolation, each value reported with the settings that produced it.
"""

from remedies.measures.config import MeasureConfig
from remedies.measures.runner import MEASURES, run_measures

__all__ = ["MEASURES", "MeasureConfig", "run_measures"]
