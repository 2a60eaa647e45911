"""``mmap=True``: large buffers are served zero-copy from a read-only memory map of a
verified buffer file; a damaged file is detected and the object rebuilt, never served
wrong; gc never pulls a file from under a live array."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import List

import pytest

import numpy as np

import trove  # noqa: E402
from trove import _objects  # noqa: E402

BIG = 1 << 20  # 8 MiB of float64


def make(store: Path, builds: List[str], version: int = 1):
    """A fresh engine on ``store`` (an empty memory tier: its first get is a disk hit)
    and an mmap recipe on it that logs its builds."""
    engine = trove.Engine(store=store)

    @engine.recipe(name="tests.arrays", mmap=True, version=version)
    def arrays(n: int) -> dict:
        builds.append(f"arrays {n}")
        return {
            "big": np.arange(n, dtype=np.float64),
            "small": np.arange(10, dtype=np.int32),  # below MAP_MIN: kept in the blob
            "strided": np.arange(2 * n, dtype=np.float64)[::2],  # not contiguous
            "label": "x",
        }

    return engine, arrays


def mapped(array) -> bool:
    """Whether the array's memory is a read-only memory map."""
    base = array.base
    while base is not None and not isinstance(base, memoryview):
        base = getattr(base, "base", None)
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap) and base.readonly


def buffer_files(store: Path) -> List[Path]:
    return sorted(p for p in (store / "py-buffers-v1").glob("*/*") if len(p.name) == 64)


def test_a_disk_hit_maps_the_arrays_read_only_and_equal(tmp_path):
    builds: List[str] = []
    _, arrays = make(tmp_path, builds)
    built, reason = arrays.get_explained(BIG)
    assert reason == "built: no entry"
    # The builder gets the mapped, read-only object too: every caller shares it.
    assert mapped(built["big"]) and not built["big"].flags.writeable

    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(BIG)
    assert reason == "hit disk"
    assert builds == [f"arrays {BIG}"]
    assert mapped(served["big"])
    assert not served["big"].flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        served["big"][0] = 1.0
    assert np.array_equal(served["big"], np.arange(BIG, dtype=np.float64))
    assert np.array_equal(served["small"], np.arange(10, dtype=np.int32))
    assert np.array_equal(served["strided"], np.arange(2 * BIG, dtype=np.float64)[::2])
    assert served["label"] == "x"
    # One buffer file: the big array (the strided one is pickled in band, the small one
    # stays in the blob).
    assert len(buffer_files(tmp_path)) == 1
    # Identity: every later caller gets the same object.
    assert fresh(BIG) is served
    assert fresh.get_explained(BIG)[1] == "hit memory"


def test_a_flipped_byte_in_a_buffer_file_is_detected_and_the_object_rebuilt(tmp_path):
    builds: List[str] = []
    _, arrays = make(tmp_path, builds)
    arrays(BIG)
    (path,) = buffer_files(tmp_path)
    stat = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    # Even with its mtime put back, the write changed the ctime: the file is hashed again.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(BIG)
    assert reason.startswith("built: check failed: stored buffer "), reason
    assert "corrupt (blake3 of the content does not match)" in reason
    assert builds == [f"arrays {BIG}"] * 2
    assert np.array_equal(served["big"], np.arange(BIG, dtype=np.float64))
    _, again = make(tmp_path, builds)
    assert again.get_explained(BIG)[1] == "hit disk"


def test_a_missing_buffer_file_rebuilds(tmp_path):
    builds: List[str] = []
    _, arrays = make(tmp_path, builds)
    arrays(BIG)
    for path in buffer_files(tmp_path):
        path.unlink()
    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(BIG)
    assert reason.startswith("built: check failed: stored buffer "), reason
    assert "is missing" in reason
    assert mapped(served["big"])
    assert builds == [f"arrays {BIG}"] * 2


def test_a_flipped_byte_in_the_blob_is_detected_and_the_object_rebuilt(tmp_path):
    builds: List[str] = []
    _, arrays = make(tmp_path, builds)
    arrays(BIG)
    blobs = [p for p in (tmp_path / "v1" / "blobs").glob("*/*") if len(p.name) == 64]
    (blob,) = blobs
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(_objects.MAGIC_MAPPED) + 20] ^= 0xFF  # inside the buffer table
    blob.write_bytes(bytes(data))
    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(BIG)
    assert reason.startswith("built: blob corrupt ("), reason
    assert np.array_equal(served["big"], np.arange(BIG, dtype=np.float64))
    assert builds == [f"arrays {BIG}"] * 2


def test_gc_removing_the_files_under_a_live_array_does_not_disturb_it(tmp_path, monkeypatch):
    builds: List[str] = []
    _, arrays = make(tmp_path, builds)
    arrays(BIG)
    _, fresh = make(tmp_path, builds)
    served = fresh(BIG)
    assert mapped(served["big"])

    # A new version makes the stored object dead: gc removes its record, its blob and,
    # once no stored blob names it, its buffer file.
    monkeypatch.setattr(_objects, "BUFFER_GRACE_S", 0.0)
    engine, _ = make(tmp_path, builds, version=2)
    report = engine.gc()
    reasons = [r["reason"] for r in report["removals"]]
    assert "buffer no stored object names" in reasons, reasons
    assert buffer_files(tmp_path) == []
    # The mapping holds the inode: the array reads as before.
    assert float(served["big"].sum()) == float(np.arange(BIG, dtype=np.float64).sum())
    assert served["big"][-1] == BIG - 1


def test_gc_keeps_the_buffer_files_of_live_objects(tmp_path, monkeypatch):
    builds: List[str] = []
    engine, arrays = make(tmp_path, builds)
    arrays(BIG)
    monkeypatch.setattr(_objects, "BUFFER_GRACE_S", 0.0)
    dry = engine.gc(dry_run=True)
    assert not [r for r in dry["removals"] if "buffer" in r["reason"]]
    engine.gc()
    assert len(buffer_files(tmp_path)) == 1
    _, fresh = make(tmp_path, builds)
    assert fresh.get_explained(BIG)[1] == "hit disk"


def test_an_object_without_buffers_works_under_mmap(tmp_path):
    engine = trove.Engine(store=tmp_path)

    @engine.recipe(mmap=True)
    def plain(x: int) -> dict:
        return {"x": x}

    assert plain(3) == {"x": 3}
    fresh_engine = trove.Engine(store=tmp_path)
    fresh = fresh_engine.recipe(mmap=True, name=plain.name)(plain.__wrapped__)
    assert fresh.get_explained(3) == ({"x": 3}, "hit disk")
