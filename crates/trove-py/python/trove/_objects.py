"""Objects as stored: pickle protocol 5, large buffers (numpy arrays) out of band.

A blob is one of:

- a plain pickle (it starts with the PROTO opcode, 0x80);
- ``MAGIC``, a little-endian header (pickle length, buffer count, each buffer's length),
  the pickle, then each buffer. On load the buffers are zero-copy slices of the blob's
  bytes, so an array is not copied a second time (it comes back read-only: served
  objects are shared and immutable);
- for ``mmap=True`` recipes, ``MAGIC_MAPPED``, a header (pickle length, buffer count, and
  per buffer: where it is, its length, and for a file the blake3 of its bytes), the
  pickle, then the buffers kept in the blob. A buffer of at least ``MAP_MIN`` bytes is
  a file of its own beside the store, ``<store>/py-buffers-v1/ab/<blake3 hex>`` (written
  with fsync and rename, mode 0444), and a served object maps it read-only: the array's
  data is the page cache's, never copied. The blob names each buffer by its content, so
  two builds of the same object are the same blob (early cutoff holds).

The engine verifies the blob's blake3 before any of this runs; a blob of 1 MiB or more is
unpickled from the engine's own memory (``loads_shared``), so its buffers are not copied. A buffer file is verified
before it is mapped: by its blake3, or (once that was done outside the racy window) by
its stat, as trove checks input files (``trove._trove.map_buffer``). A buffer file that is
missing or does not match makes the object be rebuilt, never served wrong.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import struct
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from . import _trove

MAGIC = b"trove-pickle5-oob\x01"
MAGIC_MAPPED = b"trove-pickle5-map\x01"
#: Buffers at least this large get a file of their own (and are mapped) under mmap=True.
MAP_MIN = 64 * 1024
#: gc leaves buffer files younger than this: a build writes its buffers before the
#: engine publishes the blob that names them.
BUFFER_GRACE_S = 600.0
_IN_BLOB, _IN_FILE = 0, 1


def dumps(obj: Any) -> bytes:
    buffers: List[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return data
    try:
        raws = [b.raw() for b in buffers]
    except BufferError:
        # A non-contiguous buffer cannot travel out of band: pickle it in band.
        return pickle.dumps(obj, protocol=5)
    header = struct.pack("<QI", len(data), len(raws)) + b"".join(
        struct.pack("<Q", r.nbytes) for r in raws
    )
    return b"".join([MAGIC, header, data, *raws])


def dumps_mapped(obj: Any, buffers_dir: str) -> bytes:
    """The blob of an ``mmap=True`` object; its large buffers are written to files."""
    buffers: List[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    try:
        raws = [b.raw() for b in buffers]
    except BufferError:
        return pickle.dumps(obj, protocol=5)
    entries = []
    kept = []
    for raw in raws:
        if raw.nbytes >= MAP_MIN:
            digest = _trove.put_buffer(buffers_dir, raw)
            entries.append(struct.pack("<BQ", _IN_FILE, raw.nbytes) + bytes.fromhex(digest))
        else:
            entries.append(struct.pack("<BQ", _IN_BLOB, raw.nbytes))
            kept.append(raw)
    header = struct.pack("<QI", len(data), len(raws)) + b"".join(entries)
    return b"".join([MAGIC_MAPPED, header, data, *kept])


def _mapped_header(blob: "bytes | memoryview") -> Tuple[int, int, List[Tuple[int, int, Optional[str]]]]:
    """(pickle length, offset of the pickle, [(kind, length, hex or None)])."""
    at = len(MAGIC_MAPPED)
    length, count = struct.unpack_from("<QI", blob, at)
    at += 12
    entries = []
    for _ in range(count):
        kind, size = struct.unpack_from("<BQ", blob, at)
        at += 9
        name = None
        if kind == _IN_FILE:
            name = bytes(blob[at : at + 32]).hex()
            at += 32
        elif kind != _IN_BLOB:
            raise ValueError(f"unknown buffer kind {kind} in a stored object")
        entries.append((kind, size, name))
    return length, at, entries


def _starts(blob: "bytes | memoryview", magic: bytes) -> bool:
    return bytes(blob[: len(magic)]) == magic


def loads_shared(owner: Any, buffers_dir: Optional[str] = None) -> Any:
    """:func:`loads` of the engine's own bytes (``trove._trove.StoredBytes``), without a
    copy: the view's owner holds them while any slice of it (an array) lives."""
    size = len(owner)
    # The extension cannot export a buffer under the abi3 of 3.9; a ctypes array at the
    # address can, and a subclass instance can hold the owner.
    holder = type("StoredView", (ctypes.c_ubyte * size,), {})
    view = holder.from_address(owner.address)
    view.owner = owner
    return loads(memoryview(view).cast("B").toreadonly(), buffers_dir)


def loads(blob: "bytes | memoryview", buffers_dir: Optional[str] = None, verify: bool = True) -> Any:
    view = memoryview(blob)
    if _starts(blob, MAGIC_MAPPED):
        if buffers_dir is None:
            raise ValueError("an mmap=True object needs the store's buffer directory")
        length, at, entries = _mapped_header(blob)
        data = view[at : at + length]
        at += length
        buffers = []
        for kind, size, name in entries:
            if kind == _IN_FILE:
                buffers.append(_trove.map_buffer(buffers_dir, name, size, verify))
            else:
                buffers.append(view[at : at + size])
                at += size
        return pickle.loads(data, buffers=buffers)
    if not _starts(blob, MAGIC):
        return pickle.loads(blob)
    at = len(MAGIC)
    length, count = struct.unpack_from("<QI", blob, at)
    at += 12
    sizes: Tuple[int, ...] = struct.unpack_from("<%dQ" % count, blob, at)
    at += 8 * count
    data = view[at : at + length]
    at += length
    buffers = []
    for size in sizes:
        buffers.append(view[at : at + size])
        at += size
    return pickle.loads(data, buffers=buffers)


def _blob_files(store: str) -> Iterator[str]:
    blobs = os.path.join(store, "v1", "blobs")
    try:
        shards = os.listdir(blobs)
    except OSError:
        return
    for shard in shards:
        if len(shard) != 2:
            continue
        try:
            names = os.listdir(os.path.join(blobs, shard))
        except OSError:
            continue
        for name in names:
            if len(name) == 64:
                yield os.path.join(blobs, shard, name)


def referenced_buffers(store: str) -> Set[str]:
    """The buffer files named by the blobs in ``store`` (read from their headers)."""
    names: Set[str] = set()
    for path in _blob_files(store):
        try:
            with open(path, "rb") as f:
                head = f.read(len(MAGIC_MAPPED) + 12)
                if not head.startswith(MAGIC_MAPPED):
                    continue
                _, count = struct.unpack_from("<QI", head, len(MAGIC_MAPPED))
                head += f.read(41 * count)
            _, _, entries = _mapped_header(head)
        except (OSError, struct.error, ValueError):
            continue
        names.update(name for _, _, name in entries if name)
    return names


def sweep_buffers(store: str, buffers_dir: str, dry_run: bool) -> List[Dict[str, Any]]:
    """Removes buffer files no stored blob names (older than ``BUFFER_GRACE_S``)."""
    try:
        shards = os.listdir(buffers_dir)
    except OSError:
        return []
    live = referenced_buffers(store)
    now = time.time()
    removals = []
    for shard in shards:
        folder = os.path.join(buffers_dir, shard)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            hexname = name.split(".")[0].lstrip(".")
            if hexname in live and not name.endswith(".tmp"):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if now - st.st_mtime < BUFFER_GRACE_S:
                continue
            reason = "buffer temp file of a dead writer" if name.endswith(".tmp") else (
                "stamp of a removed buffer" if name.endswith(".ok") else "buffer no stored object names"
            )
            removals.append({"what": path, "bytes": st.st_size, "reason": reason})
            if not dry_run:
                try:
                    os.remove(path)
                except OSError:
                    pass
    return removals
