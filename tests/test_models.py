import math

import pytest
import torch

from remedies.errors import ConfigError
from remedies.models import MODELS, count_parameters, create_model, output_shape


def mlp_params(d_in: int, depth: int, h: int, k: int) -> int:
    # Linear(d_in,h) + depth-1 × Linear(h,h), each with a BN (γ, β), then Linear(h, k)
    return (d_in * h + h) + (depth - 1) * (h * h + h) + depth * 2 * h + (h * k + k)


def c1_params(c: int, hw: tuple[int, int], k: int) -> int:
    conv = (c * 64 * 25 + 64) + 2 * 64 + (64 * 64 * 25 + 64) + 2 * 64
    h, w = math.ceil(math.ceil(hw[0] / 2) / 2), math.ceil(math.ceil(hw[1] / 2) / 2)
    flat = 64 * h * w
    return conv + (flat * 384 + 384) + 2 * 384 + (384 * 192 + 192) + 2 * 192 + (192 * k + k)


def c2_params(c: int, k: int, final_hw: int = 1) -> int:
    total, cin = 0, c
    for cout in (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512):
        total += cin * cout * 9 + cout + 2 * cout
        cin = cout
    return total + (512 * final_hw * 512 + 512) + 2 * 512 + (512 * k + k)


@pytest.mark.parametrize(
    "name, shape, k, expected",
    [
        ("F1", (40,), 10, mlp_params(40, 5, 512, 10)),
        ("F1", (1, 28, 28), 10, mlp_params(784, 5, 512, 10)),
        ("F2", (360,), 1973, mlp_params(360, 7, 512, 1973)),
        ("C1", (3, 32, 32), 10, c1_params(3, (32, 32), 10)),
        ("C3", (3, 32, 32), 100, c1_params(3, (32, 32), 100)),
        ("C1", (1, 28, 28), 10, c1_params(1, (28, 28), 10)),
        ("C2", (3, 32, 32), 10, c2_params(3, 10)),
        ("C4", (3, 32, 32), 100, c2_params(3, 100)),
    ],
)
def test_parameter_count_and_output_shape_match_the_spec(name, shape, k, expected):
    m = create_model(name, shape, k)
    assert count_parameters(m) == expected
    assert output_shape(m, shape, batch=3) == (3, k)


def test_f1_size_matches_the_spec_note():
    # measures.md: "F1, 1.07 M parameters" on MNIST-1D
    assert 1.07e6 < count_parameters(create_model("F1", (40,), 10)) < 1.09e6


def test_width_multiplier_and_bn_modes():
    assert count_parameters(create_model("F1", (40,), 10, width=0.25)) == mlp_params(40, 5, 128, 10)
    for bn, tracks in (("batch", False), ("running", True)):
        m = create_model("C1", (3, 32, 32), 10, bn=bn, width=0.1)
        bns = [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
        assert bns and all(b.track_running_stats is tracks and b.eps == 1e-3 for b in bns)


def test_glorot_init_and_zero_bias():
    m = create_model("F1", (40,), 10)
    lin = m[1]
    bound = math.sqrt(6 / (40 + 512))
    assert lin.weight.abs().max() <= bound and lin.weight.abs().max() > 0.9 * bound
    assert torch.all(lin.bias == 0)


def test_conv_net_on_vector_data_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"model.name: C1 needs image-shaped samples"):
        create_model("C1", (40,), 10)


def test_registry_lists_all_paper_networks():
    assert MODELS.names() == ["C1", "C2", "C3", "C4", "F1", "F2"]
