"""Sharpness and curvature of a trained model (issue 3): Keskar ε-sharpness, λ_max, Hessian trace,
adaptive sharpness and 1-D interpolation, each value reported with the settings that produced it.
"""

from remedies.measures.config import MeasureConfig  # imports (registers) every built-in family
from remedies.measures.registry import MEASURES, Measure, Section, register_measure
from remedies.measures.runner import run_measures

__all__ = ["MEASURES", "Measure", "MeasureConfig", "Section", "register_measure", "run_measures"]
