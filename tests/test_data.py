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
    # 30 frames cannot cover 1973 classes: the count is stated, not inferred
    cfg = DataConfig(name="timit", path=tmp_path, val_fraction=0.1, num_classes=1973)
    s = load_data(cfg)
    assert s.input_shape == (360,) and len(s.y_train) == 27 and len(s.y_val) == 3
    assert s.num_classes == 1973
    np.save(tmp_path / "test_features.npy", rng.normal(size=(10, 39)))
    with pytest.raises(ConfigError, match="360"):
        load_data(cfg)


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


# ------------------------------------------------------------------------------ class count


def _labelled_npz(path, y_train, y_test):
    """An npz whose labels are exactly the given ones (features are noise)."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(len(y_train), 4)).astype(np.float32),
        y_train=y_train,
        x_test=rng.normal(size=(len(y_test), 4)).astype(np.float32),
        y_test=y_test,
    )
    return path


def test_stray_label_names_the_missing_classes(tmp_path):
    p = _labelled_npz(tmp_path / "d.npz", [*range(10)] * 5 + [99], list(range(10)))
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(name="npz", path=p))
    assert str(e.value) == (
        "data: classes 10..98 never occur in the training labels (max label 99); "
        "set data.num_classes if that is intended"
    )
    # stated explicitly, the same file is accepted with that many outputs
    assert load_data(DataConfig(name="npz", path=p, num_classes=100)).num_classes == 100


def test_every_class_present_is_inferred(tmp_path):
    p = _labelled_npz(tmp_path / "d.npz", [*range(7)] * 4, [0, 1])
    assert load_data(DataConfig(name="npz", path=p, val_fraction=0.0)).num_classes == 7


@pytest.mark.parametrize(
    "y_train, y_test, message",
    [
        ([0, 1, 2, 4] * 5, [0], "data: class 3 never occurs in the training labels (max label 4);"),
        (
            [0, 1] * 10,
            [0, 12],
            "data: classes 2..12 never occur in the training labels (max label 12, in y_test);",
        ),
        ([0, 2, 4, 6, 8, 10, 12] * 3, [0], "data: classes 1, 3, 5, 7, … (6 in all) never occur"),
    ],
)
def test_gaps_are_described(tmp_path, y_train, y_test, message):
    p = _labelled_npz(tmp_path / "d.npz", y_train, y_test)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(name="npz", path=p, val_fraction=0.0))
    assert str(e.value).startswith(message)


def test_labels_beyond_num_classes_name_the_field(tmp_path):
    p = _labelled_npz(tmp_path / "d.npz", [*range(10)] * 3, [0, 1])
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(name="npz", path=p, num_classes=5))
    assert str(e.value) == (
        "data.num_classes: is 5 but y_train holds label 9; allowed: labels 0..4 or num_classes ≥ 10"
    )


def test_num_classes_is_range_checked():
    from remedies.config import parse_config

    with pytest.raises(ConfigError, match=r"^data\.num_classes: .*greater than or equal to 2"):
        parse_config({"data": {"num_classes": 1}})


def test_known_data_sets_keep_their_class_count(tmp_path):
    # 20 MNIST samples need not show all 10 digits; a label 10 is a damaged copy
    write_mnist(tmp_path, n_train=20, n_test=5)
    assert load_data(DataConfig(name="mnist", path=tmp_path, val_fraction=0.0)).num_classes == 10
    from tests.helpers import write_idx

    write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte.gz", np.full(20, 10), gz=True)
    with pytest.raises(ConfigError, match=r"^data\.path: mnist has 10 classes but y_train holds "):
        load_data(DataConfig(name="mnist", path=tmp_path))


# ----------------------------------------------------------------- truncated and corrupt files


def _one_line(cfg: DataConfig, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as e:
        load_data(cfg)
    assert "\n" not in str(e.value)
    return str(e.value)


def _cut(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_npz(tmp_path, compressed):
    p = tmp_path / "d.npz"
    (np.savez_compressed if compressed else np.savez)(p, **dict(np.load(write_npz(p))))
    _cut(p)
    _one_line(DataConfig(name="npz", path=p), r"^data\.path: cannot read .*d\.npz as \.npz \(")


def test_npz_with_a_damaged_member(tmp_path):
    # the zip directory is intact, a compressed member is not: found only when it is read
    p = tmp_path / "d.npz"
    np.savez_compressed(p, **dict(np.load(write_npz(p))))
    data = bytearray(p.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(64)
    p.write_bytes(bytes(data))
    _one_line(DataConfig(name="npz", path=p), r"^data\.path: .*d\.npz is truncated or corrupt \(")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"cannot read .* as \.npz"),
        (b"x_train,y_train\n1,2\n", r"cannot read .* as \.npz"),
        (None, r"holds a single array, not an \.npz archive"),
    ],
    ids=["empty", "text", "npy"],
)
def test_not_an_npz(tmp_path, content, match):
    p = tmp_path / "d.npz"
    if content is None:
        with open(p, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        p.write_bytes(content)
    _one_line(DataConfig(name="npz", path=p), rf"^data\.path: .*{match}")


def test_missing_npz(tmp_path):
    _one_line(DataConfig(name="npz", path=tmp_path / "absent.npz"), r"^data\.path: no such file")


@pytest.mark.parametrize(
    "gz, keep, match",
    [
        (True, 0.5, r"cannot read .*train-images-idx3-ubyte\.gz \(EOFError"),
        (False, 0.5, r"train-images-idx3-ubyte is truncated or corrupt: header says shape"),
        (False, 0.0001, r"train-images-idx3-ubyte is not an IDX file"),
    ],
)
def test_truncated_mnist_idx(tmp_path, gz, keep, match):
    write_mnist(tmp_path, gz=gz)
    _cut(tmp_path / "MNIST/raw" / ("train-images-idx3-ubyte" + (".gz" if gz else "")), keep)
    _one_line(DataConfig(name="mnist", path=tmp_path), rf"^data\.path: .*{match}")


def test_mnist_idx_of_the_wrong_rank(tmp_path):
    from tests.helpers import write_idx

    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros((50, 2)))
    _one_line(DataConfig(name="mnist", path=tmp_path), r"^data\.path: .* holds a 2-D array")


def test_truncated_cifar_pickle(tmp_path):
    write_cifar10(tmp_path)
    _cut(tmp_path / "cifar-10-batches-py/data_batch_3")
    _one_line(
        DataConfig(name="cifar10", path=tmp_path),
        r"^data\.path: cannot read .*data_batch_3 as a CIFAR batch",
    )


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2, 3], "is not a CIFAR batch"),
        ({b"data": np.zeros((4, 100), np.uint8), b"fine_labels": [0] * 4}, r"expected \(N, 3072\)"),
    ],
)
def test_foreign_cifar_pickle(tmp_path, obj, match):
    import pickle

    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python/test").write_bytes(pickle.dumps(obj))
    _one_line(DataConfig(name="cifar100", path=tmp_path), rf"^data\.path: .*{match}")


def test_truncated_timit_npy(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        np.save(tmp_path / f"{split}_features.npy", rng.normal(size=(n, 360)).astype(np.float32))
        np.save(tmp_path / f"{split}_labels.npy", np.arange(n) % 3)
    _cut(tmp_path / "train_features.npy")
    _one_line(
        DataConfig(name="timit", path=tmp_path),
        r"^data\.path: cannot read .*train_features\.npy as \.npy \(",
    )


def test_corrupt_mnist1d_cache_names_the_cache(tmp_path):
    cfg = DataConfig(name="mnist1d", num_samples=200, cache_dir=tmp_path)
    load_data(cfg)
    (cache,) = tmp_path.glob("mnist1d_n200*.npz")
    _cut(cache)
    msg = _one_line(cfg, r"^data\.cache_dir: cannot read .*mnist1d_n200")
    assert msg.endswith("delete it and it is generated again")
