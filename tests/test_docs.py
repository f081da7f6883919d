"""Each docs/ page says what the code does where it states a default or a command: defaults are
read from the pydantic models and the argparse parser, commands are parsed by the real parser,
paths must exist and flags must belong to their command."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import BaseModel

import remedies
from remedies.config import RunConfig, config_to_dict, flatten, parse_config
from remedies.hooks import Remedy
from remedies.measures.config import MeasureConfig
from remedies.reproduce.protocol import MNIST1D_SAMPLES, ReproduceOptions
from remedies.search.space import SearchSpace, parse_space
from remedies.stores.tracking import OUTAGE_LIMIT_S
from tests.docs_check import (
    ALL,
    PAGES,
    ROOT,
    SUBCOMMANDS,
    all_remedies_commands,
    block_commands,
    code_blocks,
    code_lines,
    code_spans,
    flags_of,
    is_mention,
    is_synopsis,
    parse_error,
    path_exists,
    repo_paths,
    section,
    text,
)

# --- every page: commands, paths, flags -------------------------------------------------------


@pytest.mark.parametrize("page", ALL, ids=lambda p: p.name)
def test_every_remedies_command_shown_parses(page):
    md = page.read_text()
    spans = [c for s in code_spans(md) for c in all_remedies_commands(f"`{s}`")]
    bad = []
    for c in block_commands(md):  # code blocks run as written
        if not is_synopsis(c) and (e := parse_error(c)):
            bad.append((c, e))
    for c in spans:  # in prose: a usage line, a verb named, or a command
        if not is_synopsis(c) and not is_mention(c) and (e := parse_error(c)):
            bad.append((c, e))
    assert not bad, bad


@pytest.mark.parametrize("page", ALL, ids=lambda p: p.name)
def test_every_flag_shown_belongs_to_its_command(page):
    bad = []
    for c in all_remedies_commands(page.read_text()):
        flags = {f for a in c[1:] for f in re.findall(r"(?<![\w-])--[a-z][a-z-]*", a)}
        bad += [(c[0], f) for f in flags - flags_of(c[0])]
    assert not bad, bad


@pytest.mark.parametrize("page", ALL, ids=lambda p: p.name)
def test_every_repository_path_named_exists(page):
    missing = sorted(p for p in repo_paths(page.read_text()) if not path_exists(p))
    assert not missing, missing


@pytest.mark.parametrize("page", ALL, ids=lambda p: p.name)
def test_benchmark_commands_name_real_scripts_and_flags(page):
    bad = []
    for line in code_lines(page.read_text()):
        for script, args in re.findall(r"python (benchmarks/[\w.]+\.py)((?: [^`|]*)?)", line):
            src = (ROOT / script).read_text() if (ROOT / script).exists() else ""
            bad += [(script, "missing")] if not src else []
            bad += [(script, f) for f in re.findall(r"--[a-z][a-z-]*", args) if f'"{f}"' not in src]
    assert not bad, bad


USAGE = [
    ("search", "search.md"),
    ("export", "search.md"),
    ("reproduce", "results.md"),
    ("train", "config.md"),
    ("backup", "cluster.md"),
    ("restore", "cluster.md"),
]


@pytest.mark.parametrize("verb, page", USAGE)
def test_usage_line_lists_every_flag(verb, page):
    usage = [c for c in all_remedies_commands(text(page)) if c[0] == verb and is_synopsis(c)]
    assert usage, f"no usage line for remedies {verb} in {page}"
    shown = {f for a in usage[0] for f in re.findall(r"--[a-z][a-z-]*", a)}
    assert shown == flags_of(verb), flags_of(verb) ^ shown


# --- config.md: run config and space file -----------------------------------------------------


def _cell_values(cell: str, n: int) -> list:
    vals = [v.strip().strip("`") for v in cell.split(", ")] if n > 1 else [cell.strip().strip("`")]
    return [None if v in ("none", "null", "—") else yaml.safe_load(v) for v in vals]


def test_run_config_table_states_the_code_defaults():
    defaults = flatten(config_to_dict(parse_config({})))
    rows = re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \| ([^|]*) \|", text("config.md"), re.M)
    documented = set()
    for keys_cell, default_cell in rows:
        keys = re.findall(r"`([a-z_.]+)`", keys_cell)
        if default_cell.strip().startswith("`$") or keys == ["measure"]:
            documented |= set(keys)  # an environment variable; the measure: section (below)
            continue
        for key, value in zip(keys, _cell_values(default_cell, len(keys)), strict=True):
            assert key in defaults, key
            assert value == defaults[key], (key, value, defaults[key])
            documented.add(key)
    undocumented = {k for k in defaults if not k.startswith("measure.")} - documented
    assert not undocumented and len(documented) > 25


def test_space_file_example_has_every_key_and_its_defaults():
    block = code_blocks(section(text("config.md"), "Space files"), "yaml")[0]
    raw = yaml.safe_load(block)
    space = parse_space(raw)  # every key shown is a real one, every value valid
    assert set(raw) | {"base_config"} == set(SearchSpace.model_fields)
    assert "base_config: configs/" in block
    default = SearchSpace()
    for line in block.splitlines():
        key = line.split(":", 1)[0]
        if re.search(r"# (the )?default\b", line) and key in raw:  # "# default" / "# the default"
            assert getattr(space, key) == getattr(default, key), key


def test_shipped_spaces_are_the_files():
    shipped = section(text("search.md"), "Shipped spaces")
    names = set(re.findall(r"`([a-z0-9_]+)`", shipped))
    assert names == {p.stem for p in (ROOT / "search_spaces").glob("*.yaml")}


# --- search.md and lifecycle.md: the search's stated defaults ------------------------------------


def test_search_defaults_are_the_parsers():
    search = SUBCOMMANDS["search"]
    d = {a.dest: a.default for a in search._actions}
    life = text("lifecycle.md")
    assert f"default `{d['storage']}`" in life and "default `SPACE-DATE-TIME`" in life
    assert f"`{d['results_dir']}/NAME/`" in text("search.md")
    assert "`sb_batch`, default 64" in text("search.md") and SearchSpace().baselines.sb_batch == 64


def test_tracking_outage_limit_is_the_codes():
    assert "after 15 minutes away (`REMEDIES_TRACKING_OUTAGE_LIMIT_S`)" in text("lifecycle.md")
    assert OUTAGE_LIMIT_S == 15 * 60


# --- measures.md ----------------------------------------------------------------------------


def test_measure_section_is_the_default():
    block = code_blocks(section(text("measures.md"), "The `measure:` section"), "yaml")[0]
    shown = yaml.safe_load(block)["measure"]
    assert shown == MeasureConfig().model_dump(mode="json")
    assert (
        RunConfig.model_fields["measure"].get_default(call_default_factory=True) == MeasureConfig()
    )


def test_measure_families_are_the_sections():
    line = next(x for x in text("measures.md").split("\n\n") if "`--measure` name is a family" in x)
    families = set(re.findall(r"`([a-z_]+)`", line.split("runs even if", 1)[0]))
    sections = {
        k
        for k, v in MeasureConfig.model_fields.items()
        if isinstance(v.get_default(call_default_factory=True), BaseModel)
    }
    assert families == sections and len(sections) == 5


# --- library.md: the API it shows exists ----------------------------------------------------------


def test_library_api_names_exist():
    md = text("library.md")
    run_methods = set(re.findall(r"\brun\.([a-z_]+)\(", md)) | {"epochs", "model"}
    applied = remedies.Recipe.from_dict({}).apply(
        __import__("torch").nn.Linear(4, 2), n_train=1000, input_shape=(4,)
    )
    assert run_methods and all(hasattr(applied, m) for m in run_methods), run_methods
    assert all(hasattr(remedies.Recipe, m) for m in re.findall(r"Recipe\.([a-z_]+)\(", md))
    hooks = section(md, "Adding a remedy").split("setup,", 1)[1].split(")", 1)[0]
    names = ["setup", *[h.strip() for h in hooks.split(",")]]
    assert all(callable(getattr(Remedy, h, None)) for h in names), names


# --- cluster.md -----------------------------------------------------------------------------------


def test_cluster_restore_is_what_the_head_runs():
    shown = code_blocks(section(text("cluster.md"), "Backup and restore"), "bash")[0].strip()
    head = (ROOT / "ray_cluster.yaml").read_text()
    assert f"~/venv/bin/{shown}" in head


# --- results.md: reproduce's defaults -------------------------------------------------------------


def test_reproduce_defaults_are_the_parsers():
    d = {a.dest: a.default for a in SUBCOMMANDS["reproduce"]._actions}
    md = section(text("results.md"), "Reproducing the paper")
    assert f"{d['seeds']} seeds, {d['epochs']} epochs" in md
    assert f"MNIST-1D with {MNIST1D_SAMPLES} samples" in md
    k = ReproduceOptions.model_fields["warm_k"].default
    assert "Fig. 5 at k ∈ {" + ", ".join(map(str, k)) + "}" in md


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_has_one_title(page):
    titles = re.findall(
        r"^# ", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S), flags=re.M
    )
    assert len(titles) == 1
