"""The README says what the code does: the run-config defaults and every `search` flag."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from remedies.cli import build_parser
from remedies.config import config_to_dict, flatten, parse_config

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_documented_defaults_are_the_code_defaults():
    defaults = flatten(config_to_dict(parse_config({})))
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`|]*)` \|", README, flags=re.M)
    checked = 0
    for key, doc in rows:
        if key in defaults and not doc.startswith("$"):
            assert yaml.safe_load(doc) == defaults[key], (key, doc, defaults[key])
            checked += 1
    assert checked >= 5 and "model.bn" in dict(rows)


def test_search_synopsis_lists_every_flag():
    sub = build_parser()._subparsers._group_actions[0].choices["search"]  # argparse has no API
    flags = {s for a in sub._actions for s in a.option_strings if s.startswith("--")} - {"--help"}
    synopsis = README.split("`remedies search SPACE.yaml", 1)[1].split("`", 1)[0]
    assert flags and not [f for f in flags if f not in synopsis]
