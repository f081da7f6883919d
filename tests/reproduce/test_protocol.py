"""`remedies reproduce`'s plan and runs, without Ray: what is trained, and the facts the report
relies on (same initial weights within a seed, x₀ recomputed exactly), and its bad inputs."""

from __future__ import annotations

import pytest
import torch

from remedies.cli import main
from remedies.config import parse_config
from remedies.data import load_data
from remedies.reproduce.protocol import ReproduceOptions, plan
from remedies.reproduce.task import flat, initial_weights, run_one
from remedies.stats import kendall_tau

TINY = ["data.num_samples=500", "model.width=0.1"]


def test_plan_trains_each_run_once_and_covers_every_part() -> None:
    opts = ReproduceOptions(
        seeds=2, epochs=3, sb=256, batch_sizes=[64, 256, "10%"], warm_k=[0, 2], overrides=TINY
    )
    specs = plan(opts)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    # table: 2 seeds × (SB 256, LB 10%); fig4 adds 64 only; fig5 adds k=2 (k=0 is LB)
    assert len(specs) == 4 + 1 + 1
    lb0 = next(s for s in specs if s.seed == 0 and s.batch == "10%" and s.warm_k == 0)
    assert set(lb0.parts) == {"table", "fig4", "fig5"} and lb0.keep_weights
    warm = next(s for s in specs if s.warm_k == 2)
    assert warm.config["remedies"] == {"warm_start": {"epochs": 2, "sb_batch": 256}}
    assert warm.config["train"]["epochs"] == 3 + 2  # k SB epochs, then all LB epochs
    sides = [s for s in specs if s.config["measure"].get("lambda_max")]
    assert {(s.seed, s.batch) for s in sides} == {(0, 256), (0, "10%")}
    assert all(
        s.config["measure"]["keskar"]["subspace_dims"] == [100] for s in specs if "table" in s.parts
    )


def test_sb_and_lb_of_a_seed_start_from_the_same_weights_and_x0_is_the_training_start() -> None:
    specs = plan(
        ReproduceOptions(
            seeds=2, epochs=1, sb=256, batch_sizes=[256, "10%"], warm_k=[0], overrides=TINY
        )
    )
    splits = load_data(parse_config(specs[0].config).data)
    x0 = {(s.seed, str(s.batch)): initial_weights(s.config, splits) for s in specs}
    assert torch.equal(x0[(0, "256")], x0[(0, "10%")])
    assert not torch.equal(x0[(0, "256")], x0[(1, "256")])
    # x₀ is where training starts: with lr → 0 a trained model stays on it
    raw = {
        **specs[0].config,
        "train": {**specs[0].config["train"], "lr": 1e-12},
        "measure": {"keskar": {"enabled": False}},
    }
    rec = run_one(raw, keep_weights=True, splits=splits)
    cfg = parse_config(raw)
    from remedies.engine.trainer import build_model

    m = build_model(cfg, splits, "cpu")
    m.load_state_dict(rec["weights"])
    torch.testing.assert_close(flat(m), initial_weights(raw, splits), atol=1e-8, rtol=0)
    assert rec["distance_from_init"] < 1e-6


def test_defaults_are_the_committed_reports_settings_and_the_paper_keeps_sb_256() -> None:
    """The default command is the documented one (F1, MNIST-1D 5000, SB 64, 6 batch sizes,
    k ∈ {0, 2, 5}); a paper data set keeps the paper's SB of 256; an explicit --sb wins."""
    d = ReproduceOptions()
    assert (d.sb, d.lb, d.seeds, d.epochs) == (64, "10%", 5, 40)
    assert d.batch_sizes == [64, 128, "10%", "20%", "35%", "50%"] and d.warm_k == [0, 2, 5]
    specs = plan(d)
    assert {s.config["data"]["num_samples"] for s in specs} == {5000}
    assert len(specs) == 2 * 5 + 4 + 2  # table pairs; fig4 adds 128, 20 %, 35 %, 50 %; k = 2, 5
    c1 = ReproduceOptions(nets=["C1"])
    assert c1.sb == 256 and c1.batch_sizes[:2] == [256, 512]
    assert ReproduceOptions(sb=32).batch_sizes[:2] == [32, 64]
    raw = plan(ReproduceOptions(seeds=1, overrides=["data.num_samples=800"]))[0].config
    assert raw["data"]["num_samples"] == 800


def test_gpu_share_per_run() -> None:
    from remedies.reproduce.driver import gpu_share

    assert gpu_share("auto", 2, up=0.0, auto_per_run=0.0) == 0.0  # CPU cluster
    assert gpu_share("auto", 2, up=1.0, auto_per_run=1.0) == 0.5  # one GPU, two runs on it
    assert gpu_share("auto", 4, up=8.0, auto_per_run=1.0) == 1.0  # never more than one each
    assert gpu_share("auto", 3, up=0.0, auto_per_run=1.0) == 1.0  # GPU nodes not launched yet
    assert gpu_share(0.25, 2, up=1.0, auto_per_run=1.0) == 0.25  # explicit wins


def test_out_of_gpu_memory_is_recognised_through_rays_wrapper() -> None:
    from ray.exceptions import RayTaskError

    from remedies.reproduce.driver import out_of_gpu_memory

    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.49 GiB.")
    assert out_of_gpu_memory(RayTaskError("run", "traceback", oom))
    assert out_of_gpu_memory(RuntimeError("CUDA out of memory. Tried to allocate 1 GiB"))
    assert not out_of_gpu_memory(RayTaskError("run", "traceback", ValueError("bad batch")))


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3], [1, 5, 9]) == 1.0
    assert kendall_tau([1, 2, 3], [9, 5, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # a tie is a tie (τ-b), not broken by the other list: (1,1),(2,1),(3,2) → 2/sqrt(3·2)
    assert kendall_tau([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / 6**0.5)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--nets", "F9"], "--nets"),
        (["--seeds", "0"], "--seeds"),
        (["--warm-k", "1,x"], "--warm-k"),
        (["--set", "train.lr=-1"], "train.lr"),
        (["--batch-sizes", "64,0"], "train.batch_size"),
        (["--batch-sizes", "64,5000"], "train.batch_size"),
        (["--jobs", "0"], "--jobs"),
        (["--gpu", "-1"], "--gpu"),
        (["--gpu", "many"], "--gpu"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args, field, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["reproduce", *args, "--out", str(tmp_path / "out"), "--set", TINY[0]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and field in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("net", ["C1", "C3"])
def test_plan_for_a_convnet_on_fashion_mnist_builds_it_for_28x28x1_images(net) -> None:
    """`--nets C1 --data fashion_mnist` (and C3, the same net): every run's config names the
    data set and validates, the paper's SB of 256 and LB of 10 % fit, and the net is built for
    Fashion-MNIST's 1 × 28 × 28 samples — one input channel, 7 × 7 maps after the two 'same'
    poolings — not CIFAR's 3 × 32 × 32, and no sample is resized."""
    from remedies.engine.trainer import build_model
    from remedies.models import output_shape
    from remedies.reproduce.protocol import check_batches, data_title

    opts = ReproduceOptions(
        nets=[net],
        data="fashion_mnist",
        seeds=2,
        epochs=1,
        batch_sizes=["10%", 256],
        warm_k=[0],
        overrides=["data.subset=3000", "model.width=0.25"],
    )
    assert (opts.sb, opts.lb) == (256, "10%")
    specs = plan(opts)
    assert len(specs) == 4 and {s.net for s in specs} == {net}
    for s in specs:
        assert s.config["data"] == {"name": "fashion_mnist", "subset": 3000}
        assert s.config["model"] == {"name": net, "width": 0.25}
        parse_config(s.config)
    check_batches(specs)  # LB = 10 % of 2700 = 270 > SB 256
    cfg = parse_config(specs[0].config)
    splits = load_data(cfg.data)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.x_train.shape[1:] == (1, 28, 28)  # as read: not resized, not padded
    model = build_model(cfg, splits, "cpu")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert convs[0].in_channels == 1 and convs[0].out_channels == 16
    assert linears[0].in_features == 16 * 7 * 7  # CIFAR's 32 × 32 would give 16 · 8 · 8
    assert output_shape(model, (1, 28, 28)) == (2, 10)
    assert data_title("fashion_mnist") == "Fashion-MNIST"
