"""Prototype of a mapped disk hit of a large array, in Python, against trove's own (which
now does this in the engine: ARCHITECTURE.md, "A mapped disk hit"): map the stored blob MAP_PRIVATE and
read-only, copy its header and pickle into private memory (what is unpickled is never
read from the file again), blake3 the whole blob on all cores (here `trove.canonical` of a
uint8 view of the mapping: the same hash work), and unpickle with the out-of-band buffers
as read-only slices of the mapping. Against numpy.load of the same .npy and trove's disk
hit today, in one run (release build of the extension):

    target/py-venv/bin/python crates/trove-py/bench/mapped_hit.py
"""
import os, sys, time, mmap, struct, pickle, statistics, shutil, glob
import numpy as np
import trove
from trove import _objects
import tempfile
d = tempfile.mkdtemp(prefix="trove-mapped-hit-"); os.chdir(d)
array = np.arange(100_000_000 // 8, dtype=np.float64)
npy = os.path.join(d, "a.npy"); np.save(npy, array)
eng = trove.Engine(store=os.path.join(d, "store"))
@eng.recipe(name="proto.big")
def big() -> np.ndarray:
    return array
big()
blob = max(glob.glob(os.path.join(d, "store/v1/blobs/*/*")), key=os.path.getsize)
def proto():
    t = time.perf_counter()
    fd = os.open(blob, os.O_RDONLY)
    size = os.fstat(fd).st_size
    m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    os.close(fd)
    at = len(_objects.MAGIC)
    length, count = struct.unpack_from("<QI", m, at); at += 12
    sizes = struct.unpack_from("<%dQ" % count, m, at); at += 8 * count
    private = m[:at + length]          # header and pickle: copied, then hashed from the copy
    view = memoryview(m)
    trove.canonical(np.frombuffer(m, dtype=np.uint8))   # blake3 work over the mapping
    data = memoryview(private)[at:at + length]
    at += length
    bufs = []
    for s in sizes:
        bufs.append(view[at:at + s].toreadonly()); at += s
    a = pickle.loads(data, buffers=bufs)
    return time.perf_counter() - t, a
def trove_hit():
    e = trove.Engine(store=os.path.join(d, "store"))
    @e.recipe(name="proto.big")
    def big() -> np.ndarray:
        return array
    t = time.perf_counter(); v, r = big.get_explained(); t = time.perf_counter() - t
    assert r == "hit disk"; return t
def npl():
    t = time.perf_counter(); a = np.load(npy); return time.perf_counter() - t
xs, ys, zs = [], [], []
for i in range(7):
    t, a = proto(); assert a.shape == array.shape and a[-1] == array[-1]; del a
    xs.append(t); ys.append(npl()); zs.append(trove_hit())
p, n, h = (statistics.median(v) * 1e3 for v in (xs, ys, zs))
shutil.rmtree(d, ignore_errors=True)
print(f"mapped prototype {p:.1f} ms, numpy.load {n:.1f} ms, trove disk hit {h:.1f} ms; ratios {p/n:.2f} and {h/n:.2f}")
