"""A large result's disk hit is a verified map of its blob: the header and pickle are a
private copy that was hashed with the rest, the arrays are read-only slices of the map of
the blob file, one object for every caller. A damaged blob (in the arrays or in the
pickle, or cut short) is refused before anything is unpickled and the object rebuilt; gc
removing the blob under a live array does not disturb it; a small result is read as
before."""

from __future__ import annotations

import os
import stat
import struct
import threading
from pathlib import Path
from typing import List, Optional

import numpy as np

import trove
from trove import _objects

N = 1 << 19  # 4 MiB of float64: above the 1 MiB the engine maps from


def make(store: Path, builds: List[str], version: int = 1):
    """A fresh engine on ``store`` (its first get is a disk hit) and a recipe on it."""
    engine = trove.Engine(store=store)

    @engine.recipe(name="tests.big", version=version)
    def big(n: int, parts: int = 1) -> dict:
        builds.append(f"big {n} {parts}")
        out = {f"a{i}": np.arange(n, dtype=np.float64) + i for i in range(parts)}
        out["small"] = np.arange(10, dtype=np.int32)
        out["label"] = "x"
        return out

    return engine, big


def blob_of(store: Path) -> Path:
    """The largest stored blob (the object's)."""
    blobs = [p for p in (store / "v1" / "blobs").glob("*/*") if len(p.name) == 64]
    return max(blobs, key=lambda p: p.stat().st_size)


def mapping_of(array: np.ndarray) -> Optional[str]:
    """The file whose map holds the array's first byte (from /proc/self/maps), if any."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 else None
    return None


def expected(n: int, i: int = 0) -> np.ndarray:
    return np.arange(n, dtype=np.float64) + i


def test_a_large_result_from_disk_is_a_read_only_map_of_its_blob_shared_by_every_caller(tmp_path):
    builds: List[str] = []
    _, big = make(tmp_path, builds)
    big(N)
    blob = blob_of(tmp_path)
    # Published read-only: nothing writes a blob in place.
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444

    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(N)
    assert reason == "hit disk"
    assert builds == [f"big {N} 1"]
    array = served["a0"]
    assert np.array_equal(array, expected(N))
    assert mapping_of(array) == str(blob)
    assert not array.flags.writeable
    try:
        array[0] = 1.0
        raise AssertionError("a served array took a write")
    except ValueError as e:
        assert "read-only" in str(e)
    assert np.array_equal(served["small"], np.arange(10, dtype=np.int32))
    assert served["label"] == "x"
    # One object for every caller: later calls, and another thread.
    assert fresh(N) is served
    other = []
    t = threading.Thread(target=lambda: other.append(fresh(N)))
    t.start()
    t.join()
    assert other[0] is served
    assert fresh.get_explained(N)[1] == "hit memory"


def test_several_large_buffers_are_each_a_slice_of_the_map(tmp_path):
    builds: List[str] = []
    _, big = make(tmp_path, builds)
    big(N, 3)
    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(N, 3)
    assert reason == "hit disk"
    blob = str(blob_of(tmp_path))
    for i in range(3):
        assert np.array_equal(served[f"a{i}"], expected(N, i))
        assert mapping_of(served[f"a{i}"]) == blob
        assert not served[f"a{i}"].flags.writeable
    assert np.array_equal(served["small"], np.arange(10, dtype=np.int32))


def header(blob: Path):
    """(offset of the pickle, its length) in a `trove._objects.dumps` blob."""
    data = blob.read_bytes()
    assert data.startswith(_objects.MAGIC)
    at = len(_objects.MAGIC)
    length, count = struct.unpack_from("<QI", data, at)
    return at + 12 + 8 * count, length


def damage(blob: Path, offset: int) -> None:
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[offset] ^= 0xFF
    blob.write_bytes(bytes(data))


def served_after_damage(tmp_path: Path, builds: List[str], where: str):
    _, big = make(tmp_path, builds)
    big(N)
    blob = blob_of(tmp_path)
    if where == "buffer":
        damage(blob, blob.stat().st_size - 3)
    elif where == "pickle":
        at, length = header(blob)
        damage(blob, at + length // 2)
    else:
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as f:
            f.truncate(blob.stat().st_size - 4096)
    _, fresh = make(tmp_path, builds)
    return fresh.get_explained(N)


def check_rebuilt(tmp_path: Path, builds: List[str], served, reason: str) -> None:
    assert reason.startswith("built: blob corrupt ("), reason
    assert builds == [f"big {N} 1"] * 2
    assert np.array_equal(served["a0"], expected(N))
    # The damaged file went to quarantine and the rebuild stored a good one: the next
    # process is served from disk, mapped, without a build.
    assert list((tmp_path / "v1" / "quarantine").iterdir())
    _, again = make(tmp_path, builds)
    served, reason = again.get_explained(N)
    assert reason == "hit disk"
    assert np.array_equal(served["a0"], expected(N))
    assert mapping_of(served["a0"]) == str(blob_of(tmp_path))
    assert builds == [f"big {N} 1"] * 2


def test_a_flipped_byte_among_the_arrays_is_refused_and_the_object_rebuilt(tmp_path):
    builds: List[str] = []
    served, reason = served_after_damage(tmp_path, builds, "buffer")
    assert "blake3 of the content does not match" in reason
    check_rebuilt(tmp_path, builds, served, reason)


def test_a_flipped_byte_in_the_pickle_is_refused_before_unpickling(tmp_path):
    builds: List[str] = []
    served, reason = served_after_damage(tmp_path, builds, "pickle")
    assert "blake3 of the content does not match" in reason
    check_rebuilt(tmp_path, builds, served, reason)


def test_a_blob_cut_short_is_refused_and_the_object_rebuilt(tmp_path):
    builds: List[str] = []
    served, reason = served_after_damage(tmp_path, builds, "truncate")
    check_rebuilt(tmp_path, builds, served, reason)


def test_gc_removing_the_blob_under_a_live_array_does_not_disturb_it(tmp_path):
    builds: List[str] = []
    _, big = make(tmp_path, builds)
    big(N)
    blob = blob_of(tmp_path)
    _, fresh = make(tmp_path, builds)
    served = fresh(N)
    assert mapping_of(served["a0"]) == str(blob)

    # A new version makes the stored object dead: gc removes its record and its blob.
    engine, _ = make(tmp_path, builds, version=2)
    report = engine.gc()
    assert report["removals"], report
    assert not blob.exists()
    # The map holds the inode: the array reads as before.
    assert mapping_of(served["a0"]) == f"{blob} (deleted)"
    assert float(served["a0"].sum()) == float(expected(N).sum())
    assert served["a0"][-1] == N - 1
    del served, fresh


def test_a_small_result_is_read_into_memory_as_before(tmp_path):
    builds: List[str] = []
    _, big = make(tmp_path, builds)
    small = 1 << 14  # 128 KiB: below the threshold
    big(small)
    _, fresh = make(tmp_path, builds)
    served, reason = fresh.get_explained(small)
    assert reason == "hit disk"
    assert np.array_equal(served["a0"], expected(small))
    assert mapping_of(served["a0"]) != str(blob_of(tmp_path))
    assert not served["a0"].flags.writeable
    assert fresh(small) is served


def text_recipe(store: Path):
    engine = trove.Engine(store=store)

    @engine.recipe(name="tests.text")
    def text(n: int) -> list:
        return [str(i) for i in range(n)]

    return text


def test_a_large_plain_pickle_is_read_into_memory(tmp_path):
    text_recipe(tmp_path)(300_000)
    assert blob_of(tmp_path).stat().st_size > 1 << 20
    served, reason = text_recipe(tmp_path).get_explained(300_000)
    assert reason == "hit disk"
    assert served == [str(i) for i in range(300_000)]
