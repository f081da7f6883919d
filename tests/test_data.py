import numpy as np
import pytest
import torch

from remedies.config import DataConfig
from remedies.data import _download, _md5, load_data
from remedies.errors import ConfigError
from tests.helpers import write_cifar10, write_cifar100, write_mnist, write_npz


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_reader(tmp_path, gz):
    xs, ys = write_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    s = load_data(DataConfig(name="mnist", path=tmp_path, val_fraction=0.2))
    assert s.x_train.shape == (40, 1, 28, 28) and s.x_val.shape == (10, 1, 28, 28)
    assert (
        s.x_test.shape == (20, 1, 28, 28)
        and s.num_classes == int(max(ys["train"].max(), ys["t10k"].max())) + 1
    )
    # pixels scaled to [0, 1]; test split kept in file order, byte for byte
    assert torch.equal(s.x_test[:, 0], torch.from_numpy(xs["t10k"].astype(np.float32) / 255))
    assert torch.equal(s.y_test, torch.from_numpy(ys["t10k"]))
    # train + val together are exactly the file's training set
    got = sorted(map(tuple, torch.cat([s.y_train, s.y_val]).reshape(-1, 1).tolist()))
    assert got == sorted(map(tuple, ys["train"].reshape(-1, 1).tolist()))


def test_mnist_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path: no MNIST copy .* data.download: true"):
        load_data(DataConfig(name="mnist", path=tmp_path))


def test_download_is_atomic_and_checksummed(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"mnist bytes" * 1000)
    dest = tmp_path / "cache" / "train-images-idx3-ubyte.gz"
    with pytest.raises(ConfigError, match="data.download: checksum mismatch"):
        _download(src.as_uri(), dest, md5="0" * 32)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # nothing half-written
    with pytest.raises(ConfigError, match="data.download: could not download"):
        _download((tmp_path / "absent.bin").as_uri(), dest, md5="0" * 32)
    assert list(dest.parent.iterdir()) == []
    assert _download(src.as_uri(), dest, md5=_md5(src)) == dest
    assert dest.read_bytes() == src.read_bytes() and list(dest.parent.iterdir()) == [dest]


def test_cifar10_pickle_reader(tmp_path):
    batches, test = write_cifar10(tmp_path, per_batch=8, n_test=10)
    s = load_data(DataConfig(name="cifar10", path=tmp_path, val_fraction=0.0))
    assert s.x_train.shape == (40, 3, 32, 32) and s.x_test.shape == (10, 3, 32, 32)
    # CHW layout: the first 1024 bytes of a row are the red plane
    want = torch.from_numpy(test[b"data"][3, :1024].reshape(32, 32).astype(np.float32) / 255)
    assert torch.equal(s.x_test[3, 0], want)
    assert s.y_test.tolist() == test[b"labels"]
    # val_fraction 0 keeps every training sample (in a seeded order)
    all_labels = sum((b[b"labels"] for b in batches), [])
    assert sorted(s.y_train.tolist()) == sorted(all_labels)


def test_cifar100_uses_fine_labels(tmp_path):
    d = write_cifar100(tmp_path)
    s = load_data(DataConfig(name="cifar100", path=tmp_path, val_fraction=0.0))
    assert s.y_test.tolist() == d["test"][b"fine_labels"]
    assert s.x_train.shape == (30, 3, 32, 32)


def test_timit_feature_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        np.save(tmp_path / f"{split}_features.npy", rng.normal(size=(n, 360)).astype(np.float32))
        np.save(tmp_path / f"{split}_labels.npy", rng.integers(0, 1973, n))
    s = load_data(DataConfig(name="timit", path=tmp_path, val_fraction=0.1))
    assert s.input_shape == (360,) and len(s.y_train) == 27 and len(s.y_val) == 3
    np.save(tmp_path / "test_features.npy", rng.normal(size=(10, 39)))
    with pytest.raises(ConfigError, match="360"):
        load_data(DataConfig(name="timit", path=tmp_path))


def test_npz_validation_split_is_seeded_and_disjoint(tmp_path):
    p = write_npz(tmp_path / "d.npz", n_train=100)
    a = load_data(DataConfig(name="npz", path=p, val_fraction=0.25, split_seed=3))
    b = load_data(DataConfig(name="npz", path=p, val_fraction=0.25, split_seed=3))
    c = load_data(DataConfig(name="npz", path=p, val_fraction=0.25, split_seed=4))
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    assert len(a.y_val) == 25 and len(a.y_train) == 75
    rows = {tuple(r) for r in a.x_train.tolist()}
    assert not rows & {tuple(r) for r in a.x_val.tolist()}
    m = load_data(DataConfig(name="npz", path=p, val_fraction=0.25, split_seed=3, max_train=10))
    assert torch.equal(m.x_train, a.x_train[:10])


@pytest.mark.parametrize(
    "override, match",
    [
        ({"x_test": None}, "lacks arrays x_test"),
        ({"y_train": np.zeros(7, dtype=np.int64)}, "x_train has 200 samples but y_train has 7"),
        ({"y_train": np.zeros(200, dtype=np.float32)}, "integer class labels"),
        ({"y_test": -np.ones(50, dtype=np.int64)}, "negative labels"),
        ({"x_test": np.zeros((50, 41), dtype=np.float32)}, "samples have shape"),
        ({"x_train": np.full((200, 40), np.nan, dtype=np.float32)}, "NaN"),
    ],
)
def test_npz_errors(tmp_path, override, match):
    p = write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(ConfigError, match=match) as e:
        load_data(DataConfig(name="npz", path=p))
    assert "\n" not in str(e.value)


def test_mnist1d_generated_locally_and_cached(tmp_path):
    cfg = DataConfig(name="mnist1d", num_samples=500, cache_dir=tmp_path)
    s = load_data(cfg)
    assert s.input_shape == (40,) and s.num_classes == 10
    assert len(s.y_train) + len(s.y_val) == 400 and len(s.y_test) == 100
    assert list(tmp_path.glob("mnist1d_n500*.npz"))
    assert torch.equal(load_data(cfg).x_train, s.x_train)
