import pytest

from remedies.io import atomic_target, atomic_write_text


def test_atomic_write_replaces_only_on_success(tmp_path):
    p = tmp_path / "sub" / "out.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError), atomic_target(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert p.read_text() == "old"
    assert sorted(x.name for x in p.parent.iterdir()) == ["out.json"]  # no temp file left
    with atomic_target(p) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == p.parent
        tmp.write_text("new")
    assert p.read_text() == "new"
