"""Objects as stored: pickle protocol 5, large buffers (numpy arrays) out of band.

A blob is either a plain pickle (it starts with the PROTO opcode, 0x80) or, when the
object has out-of-band buffers, ``MAGIC``, a little-endian header (pickle length, buffer
count, each buffer's length), the pickle, then each buffer. On load the buffers are
zero-copy slices of the blob's bytes, so an array is not copied a second time (it comes
back read-only: served objects are shared and immutable). The engine verifies the blob's
blake3 before any of this runs.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, List, Tuple

MAGIC = b"trove-pickle5-oob\x01"


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


def loads(blob: bytes) -> Any:
    if not blob.startswith(MAGIC):
        return pickle.loads(blob)
    view = memoryview(blob)
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
