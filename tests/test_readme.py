"""The README says what the code does: its two fresh-machine commands, one example per command
that the real parser takes, the remedy table, and a contents list of docs/ whose links resolve.
The reference pages under docs/ are held to the code by tests/test_docs.py."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from remedies.catalog import REMEDIES
from remedies.search.space import parse_space
from tests.docs_check import (
    ALL,
    DOCS,
    README,
    ROOT,
    SUBCOMMANDS,
    block_commands,
    broken_links,
    code_blocks,
    parse_error,
    section,
)

MD = README.read_text()


def test_readme_is_short():
    assert len(MD.splitlines()) <= 260


def test_fresh_machine_commands_are_the_documented_ones():
    """The main job: pip-installable with a CPU torch that the project accepts, then the shipped
    space that trains on the embedded offline default; and the tests: pytest over tests/."""
    fresh = section(MD, "On a fresh machine")
    main, tests = code_blocks(fresh, "bash")
    assert main.strip() == (
        'pip install torch==2.13.0 && pip install -e ".[dev]" && '
        "remedies search search_spaces/faster_than_sb.yaml"
    )
    assert tests.strip() == "python -m pytest"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch = next(
        Requirement(d) for d in project["project"]["dependencies"] if d.startswith("torch")
    )
    assert "2.13.0" in torch.specifier and "dev" in project["project"]["optional-dependencies"]
    assert project["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert parse_error(["search", "search_spaces/faster_than_sb.yaml"]) is None
    space = parse_space(yaml.safe_load((ROOT / "search_spaces/faster_than_sb.yaml").read_text()))
    assert space.base["data"]["name"] == "mnist1d"  # generated locally: no network
    assert not space.base["data"].get("download") and space.resources.gpu in ("auto", 0)
    assert space.num_samples == 30 and "30 trials" in fresh  # "then 30 trials for ..."


def test_quickstart_comment_is_the_space_file():
    quick = parse_space(yaml.safe_load((ROOT / "search_spaces/quickstart.yaml").read_text()))
    line = next(x for x in MD.splitlines() if "remedies search search_spaces/quickstart.yaml" in x)
    n, k = map(int, re.search(r"# (\d+) trials, (\d+) at a time", line).groups())
    assert (n, k) == (quick.num_samples, quick.max_concurrent)


def test_every_command_has_an_example_that_parses():
    cmds = block_commands(section(MD, "Usage"))
    shown = {c[0] for c in cmds}
    assert set(SUBCOMMANDS) <= shown, set(SUBCOMMANDS) - shown
    bad = [(c, e) for c in cmds if (e := parse_error(c))]
    assert not bad, bad


def test_remedy_table_is_the_catalogue():
    rows = re.findall(r"^\| `([a-z_]+)` \|", section(MD, "Remedies"), flags=re.M)
    assert sorted(rows) == sorted(REMEDIES.names())


def test_contents_list_every_docs_page_one_line_each():
    contents = section(MD, "Documentation")
    listed = [re.search(r"\]\(docs/([\w.-]+\.md)\)", x) for x in contents.splitlines()]
    listed = [m.group(1) for m in listed if m]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", ALL, ids=lambda p: p.name)
def test_local_links_resolve(page):
    assert not broken_links(page)
