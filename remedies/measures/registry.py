"""The measure registry: a measure family is one `Measure` — its `measure:` config section, the keys
it reports and how it computes them — registered with one `register_measure(...)` call in its own
file under `remedies/measures/families/` (every module there is imported with `remedies.measures`).

Everything else reads this registry: `MeasureConfig` gets one section per family (named as the
family, in `order`), `measure_keys` asks each family for its keys, `run_measures` runs each family,
and `--measure` accepts family names and the exact keys a family's `key_pattern` matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from remedies.registry import Registry

if TYPE_CHECKING:
    from remedies.measures.objective import ModelObjective  # here: objective imports this

Record = dict[str, Any]  # one value's detail record: key, value and the settings that produced it


class Section(BaseModel):
    """A family's `measure.<name>` section: `enabled` plus the family's own settings (unknown keys
    raise, so a typo never silently falls back to a default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False


S = TypeVar("S", bound=Section)


@dataclass(frozen=True)
class Measure(Generic[S]):
    """One measure family. A new measure is one of these, registered with `register_measure`."""

    name: str  # the family's `--measure` name and its `measure:` section
    Config: type[S]  # the section's model; every field has a default
    keys: Callable[[S], list[str]]  # the keys the family reports as configured, in order
    # (obj, section, names) → one record per key; names None: as configured, else the
    # `--measure` names of this family (its own name, or exact keys that carry their settings)
    run: Callable[[ModelObjective, S, set[str] | None], list[Record]]
    key_pattern: str | None = None  # regex of the exact keys `--measure` may name (fullmatch)
    # why it cannot run with batch-statistics BN (refused before any work); None: it can
    batch_bn_refusal: str | None = None
    order: int = 100  # position of the section in `measure:` (built-ins 0–4; ties by name)


MEASURES: Registry[Measure[Any]] = Registry("measure")


def register_measure(measure: Measure[S]) -> Measure[S]:
    """Register a measure family; a taken name raises ValueError."""
    if "enabled" not in measure.Config.model_fields:
        raise ValueError(f"measure {measure.name!r}: its Config needs an `enabled` field")
    return MEASURES.register(measure.name)(measure)


def measures() -> list[Measure[Any]]:
    """Every registered family, in section order."""
    return sorted((MEASURES.get(n) for n in MEASURES), key=lambda m: (m.order, m.name))


def fmt(v: float) -> str:
    """1e-3 → '1e-03': the key spelling (two-digit exponent, as Python's %e writes it)."""
    return f"{v:.0e}" if float(f"{v:.0e}") == v else f"{v:.2e}"
