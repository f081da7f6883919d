"""Search-space files (`search_spaces/*.yaml`), typed and validated once, before anything starts.

A space file is a complete run config (`base`) plus what to vary:

    name: quickstart                 # default search/experiment name
    base: {data: ..., model: ..., train: ..., measure: ...}   # or base_config: path/to/run.yaml
    params:                          # dotted run-config path → distribution
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {type: categorical, choices: [256, 512]}
    remedies:                        # each one is switched on/off by the sampler; its own
      sam: {rho: {type: float, low: 0.01, high: 0.5, log: true}}   # knobs only when on
      ghost_bn: {always: true, params: {ghost_size: 32}}           # (long form)
    objectives:                      # default: val_accuracy max, Keskar sharpness min
      - {name: val_accuracy, mode: max}
      - {name: keskar_full_eps1e-03, mode: min}
    scalarize: false                 # true: one objective Σ weight·(±value), Pareto still kept
    sampler: {name: tpe, seed: 0}    # tpe | nsga2 | gp | random
    asha: {enabled: true, grace_period: 2, reduction_factor: 2}
    num_samples: 12
    max_concurrent: 2
    max_failures: 1                  # retries of a crashed trial or reference, from its saved state
    checkpoint_every: {epochs: 1}    # and/or minutes: how often a trial saves that state
    resources: {cpu: 1, gpu: 0}      # per trial; gpu may be fractional; 'auto' = 1 GPU if any

Why validate everything up front: a typo found after ten GPU-hours is a lost day. Every parameter
path is probed against the real `RunConfig` at its range ends and at every categorical choice, so
an unknown key or an out-of-range bound fails here with one line naming the field; and every
objective must be a value each of those trial configs reports (a result metric, or a key its
`measure:` section produces), or every trial would end without the value the search optimises.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from remedies.catalog import REMEDIES
from remedies.config import RunConfig, apply_overrides, parse_config, read_yaml
from remedies.errors import ConfigError, describe
from remedies.measures.config import measure_keys
from remedies.search.space_edits import set_keys
from remedies.search.space_model import (  # the models, re-exported: `space.SearchSpace`
    DEFAULT_OBJECTIVES,
    MIN_BATCH,
    REFERENCE_METRICS,
    RESULT_METRICS,
    SAMPLERS,
    Asha,
    Baselines,
    CheckpointEvery,
    Constraint,
    Dist,
    Objective,
    RemedyChoice,
    Resources,
    Sampler,
    SearchSpace,
    Value,
)

__all__ = [
    "REFERENCE_METRICS",
    "RESULT_METRICS",
    "MIN_BATCH",
    "SAMPLERS",
    "DEFAULT_OBJECTIVES",
    "Asha",
    "Baselines",
    "CheckpointEvery",
    "Constraint",
    "Dist",
    "Objective",
    "RemedyChoice",
    "Resources",
    "Sampler",
    "SearchSpace",
    "Value",
    "base_raw",
    "load_space",
    "parse_space",
    "resolve",
]

# ----------------------------------------------------------------------------------- loading


def _format(err: ValidationError, prefix: str = "") -> str:
    """One line for the first pydantic error; list positions read `objectives[1].mode`."""
    e = err.errors()[0]
    loc = prefix.rstrip(".")
    for p in e["loc"]:
        if isinstance(p, int):
            loc += f"[{p}]"
        elif not str(p).startswith("function-after"):
            loc += f".{p}" if loc else str(p)
    return f"{loc or 'space'}: {describe(e)}"


def parse_space(raw: dict[str, Any], origin: Path | None = None) -> SearchSpace:
    """Validate a raw space dict fully (including every probe config); raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("space", "must be a YAML mapping with base/params/objectives")
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as err:
        msg = _format(err)
        if msg.endswith(": unknown key"):
            msg += _allowed(err.errors()[0]["loc"])
        raise ConfigError("", msg) from None
    if space.base_config is not None:  # inlined once: trials never read the driver's files
        f = space.base_config
        if origin is not None and not f.is_absolute():
            f = (origin.parent / f).resolve()
        space.base = _merge(read_yaml(f), space.base)
        space.base_config = None
    _set_workers(space)
    _probe(space)
    return space


def _set_workers(space: SearchSpace) -> None:
    """`resources.workers` is the base's `train.workers` (one value, said in one place)."""
    if "workers" not in space.resources.model_fields_set:
        return
    k = space.resources.workers
    train = space.base.get("train")
    train = dict(train) if isinstance(train, dict) else {}
    if "train.workers" in space.params and k > 1:
        raise ConfigError(
            "resources.workers", "train.workers is searched (params); set one of the two"
        )
    if train.get("workers", k) != k:
        raise ConfigError(
            "resources.workers",
            f"{k} but base.train.workers is {train['workers']}; set one of the two",
        )
    if k > 1:
        space.base = {**space.base, "train": {**train, "workers": k}}


def _allowed(loc: tuple) -> str:
    models: dict[str, type[BaseModel]] = {
        "sampler": Sampler,
        "asha": Asha,
        "resources": Resources,
        "objectives": Objective,
        "baselines": Baselines,
        "constraints": Constraint,
    }
    if len(loc) == 1:
        return f"; allowed: {', '.join(SearchSpace.model_fields)}"
    if loc[0] in models:
        return f"; allowed: {', '.join(models[loc[0]].model_fields)}"
    if loc[0] == "params":
        return f"; allowed: {', '.join(Dist.model_fields)}"
    return ""


def load_space(path: Path, overrides: list[str] | None = None) -> SearchSpace:
    """Read, override (`remedies search --set KEY=VALUE`) and validate a space file."""
    return parse_space(set_keys(read_yaml(Path(path)), overrides or []), origin=Path(path))


def base_raw(space: SearchSpace) -> dict[str, Any]:
    """The base run config as a raw dict (its `base_config` file was inlined at load)."""
    return copy.deepcopy(space.base)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve(space: SearchSpace, sample: dict[str, Any]) -> dict[str, Any]:
    """The complete raw run config of one trial: base + sampled params + chosen remedies.

    `sample` is what the define-by-run space returned: `{"train.lr": 0.003, "remedy.sam": True,
    "sam.rho": 0.1}`. Remedies switched off are absent; remedies in `base` stay on.
    """
    raw = base_raw(space)
    overrides = [
        f"{k}={_yaml(v)}"
        for k, v in sample.items()
        if not k.startswith(("remedy.", "@"))
        and "." in k
        and k.split(".", 1)[0] not in space.remedies
    ]
    raw = apply_overrides(raw, overrides)
    rem = dict(raw.get("remedies") or {})
    for name in space.remedies:
        if sample.get(f"remedy.{name}"):
            params = {k.split(".", 1)[1]: v for k, v in sample.items() if k.startswith(f"{name}.")}
            rem[name] = params
    raw["remedies"] = rem
    return raw


def _yaml(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def _check_objectives(
    space: SearchSpace, cfg: RunConfig, base_keys: list[str], when: str | None = None
) -> None:
    """Every objective must be a value a trial of `cfg` reports: a result metric or one of the
    keys its measure section produces (computed from the config, nothing is run)."""
    produced = measure_keys(cfg.measure)
    reported = RESULT_METRICS + reference_metrics(space.baselines)
    named = [(f"objectives[{i}].name", o.name) for i, o in enumerate(space.objectives)]
    named += [(f"constraints[{i}].name", c.name) for i, c in enumerate(space.constraints)]
    for field, o_name in named:
        if o_name in reported or o_name in produced:
            continue
        if o_name in REFERENCE_METRICS:
            raise ConfigError(
                field,
                f"{o_name!r} needs the search's baselines (SB and plain LB)"
                "; set baselines: {enabled: true, lb: true}",
            )
        o = Objective(name=o_name, mode="max")
        base = ", ".join(base_keys) or "none (every measure is off)"
        if when is None:
            msg = f"{o.name!r} is not a value any trial reports"
        else:
            msg = (
                f"{o.name!r} is not reported when {when} (that measure section produces: "
                f"{', '.join(produced) or 'none'})"
            )
        msg += (
            f"; allowed: {', '.join(reported)}, or a key the base's measure section "
            f"produces: {base}"
        )
        if "objectives" not in space.model_fields_set and field.startswith("objectives"):
            msg += " (these are the default objectives; set objectives: to choose others)"
        raise ConfigError(field, msg)


def reference_metrics(b: Baselines) -> tuple[str, ...]:
    """The reference-relative metrics a search with these baselines reports."""
    if not b.enabled:
        return ()
    gap = ("gap_closed", "test_gap_closed")
    return REFERENCE_METRICS if b.lb else tuple(m for m in REFERENCE_METRICS if m not in gap)


def _probe(space: SearchSpace) -> None:
    """Parse the base, then the base with each parameter at each end of its range or at each of
    its choices, then each remedy; check the objectives against every probed config."""
    try:
        base = parse_config(base_raw(space))
    except ConfigError as e:
        raise ConfigError("", f"base.{e}") from None
    base_keys = measure_keys(base.measure)
    _check_objectives(space, base, base_keys)
    probes: list[tuple[str, RunConfig]] = [("base", base)]
    ends: list[tuple[str, dict[str, Any]]] = []
    if space.constraints and space.sampler.name == "random":
        raise ConfigError(
            "constraints",
            "the random sampler ignores constraints; allowed "
            "samplers with constraints: tpe, nsga2, gp",
        )
    for path, dist in space.params.items():
        for v in dist.ends():
            try:
                cfg = parse_config(apply_overrides(base_raw(space), [f"{path}={_yaml(v)}"]))
            except ConfigError as e:
                raise ConfigError(f"params.{path}", f"{v!r} is not accepted: {e}") from None
            _check_objectives(space, cfg, base_keys, f"params.{path} is {v!r}")
            ends.append((f"params.{path}={v!r}", {path: v}))
            probes.append((ends[-1][0], cfg))

    for name, choice in space.remedy_choices().items():
        if name not in REMEDIES:
            REMEDIES.get(name, f"remedies.{name}")  # raises with the known names
        for key, val in choice.params.items():
            if isinstance(val, dict) and "type" in val:
                try:
                    Dist.model_validate(val)
                except ValidationError as err:
                    raise ConfigError("", _format(err, f"remedies.{name}.{key}.")) from None
        for params in _remedy_probes(space, name):
            sample = {f"remedy.{name}": True, **{f"{name}.{k}": v for k, v in params.items()}}
            try:
                probes.append(
                    (f"remedies.{name} with {params}", parse_config(resolve(space, sample)))
                )
            except ConfigError as e:
                raise ConfigError(f"remedies.{name}", f"not accepted with {params}: {e}") from None
            for what, setting in ends:  # the degenerate corners: a remedy at a parameter's end
                try:
                    cfg = parse_config(resolve(space, {**sample, **setting}))
                except ConfigError:
                    continue  # accepted piecewise above; a trial of this corner says why
                probes.append((f"remedies.{name} with {params} and {what}", cfg))
    space._probes = probes


def _remedy_probes(space: SearchSpace, name: str) -> list[dict[str, Any]]:
    """The remedy's knobs all at their low ends, all at their high ends, and then each knob at
    each of its values (every categorical choice) with the others low."""
    dists = {key: space.remedy_param(name, key) for key in space.remedy_choices()[name].params}
    values = {k: v.ends() if isinstance(v, Dist) else [v] for k, v in dists.items()}
    low = {k: vs[0] for k, vs in values.items()}
    probes = [low, {k: vs[-1] for k, vs in values.items()}]
    for k, vs in values.items():
        probes += [{**low, k: v} for v in vs[1:-1]]
    return probes
