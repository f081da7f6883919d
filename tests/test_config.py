import pytest

from remedies.config import RunConfig, apply_overrides, flatten, parse_config, resolve_batch_size
from remedies.errors import ConfigError


def test_minimal_config_fills_documented_defaults():
    cfg = parse_config(
        {
            "data": {"name": "npz", "path": "my.npz"},
            "model": {"name": "F1"},
            "train": {"batch_size": 64, "epochs": 20, "optimizer": "adam", "lr": 0.001, "seed": 0},
        }
    )
    assert cfg.model.bn == "running" and cfg.model.width == 1.0
    assert cfg.data.val_fraction == 0.1 and cfg.remedies == {}


@pytest.mark.parametrize(
    "override, field, hint",
    [
        ("train.optimizer=rmsprop", "train.optimizer", "'adam' or 'sgd'"),
        ("train.bogus=1", "train.bogus", "allowed: batch_size"),
        ("bogus=1", "bogus", "allowed: data, model, train"),
        ("train.epochs=abc", "train.epochs", "valid integer"),
        ("train.lr=-1", "train.lr", "greater than 0"),
        ("train.batch_size=0", "train.batch_size", "positive integer"),
        ("train.batch_size=150%", "train.batch_size", "percentage"),
        ("model.name=F9", "model.name", "allowed: C1, C2, C3, C4, F1, F2"),
        ("model.bn=sometimes", "model.bn", "'batch' or 'running'"),
        ("data.name=imagenet", "data.name", "fashion_mnist, idx, mnist, mnist1d"),
        ("data.name=npz", "data", "data.path is required"),
        ("remedies.nonexistent={}", "remedies.nonexistent", "unknown remedy"),
    ],
)
def test_bad_values_give_one_line_naming_field_and_allowed(override, field, hint):
    with pytest.raises(ConfigError) as e:
        parse_config(apply_overrides({}, [override]))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(field), msg
    assert hint in msg, msg


def test_batch_size_percent_and_too_large():
    assert resolve_batch_size("10%", 7200, "f") == 720
    assert resolve_batch_size("0.5%", 1000, "f") == 5
    assert resolve_batch_size(64, 7200, "f") == 64
    with pytest.raises(ConfigError, match=r"train.batch_size: batch size 9000 is larger"):
        RunConfig().train.model_copy(update={"batch_size": 9000}).resolve_batch_size(7200)


def test_overrides_parse_yaml_values_and_nest():
    raw = apply_overrides(
        {"train": {"lr": 1}}, ["train.lr=0.5", "train.batch_size=10%", "remedies.x.y=[1, 2]"]
    )
    assert raw == {"train": {"lr": 0.5, "batch_size": "10%"}, "remedies": {"x": {"y": [1, 2]}}}
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, ["train.lr"])


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": {}}) == {"a.b": 1, "a.c.d": 2, "e": {}}


def test_shipped_run_configs_validate():
    from pathlib import Path

    from remedies.config import load_config

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert paths
    for p in paths:
        load_config(p)
