"""What a new process pays for a large memory store's approximate index.

Usage: ``python scripts/measure_index_rebuild.py 50000 200000`` (with the fork
installed, release build). For each size: a store of that many random
384-dimensional records; a store object on the file builds the HNSW index
(wall and CPU time) and saves it beside the store; then a new store object on
the file (what a new process does) loads the saved index instead. Reported:
the mirror load at open, the build, the saved files' size, and the load.
There is no upstream side to compare: LanceDB keeps no such index for this table.
"""

from __future__ import annotations

import array
import os
import random
import sys
import tempfile
import time

from crewai_rust import _native
from crewai_rust.memory import StoredRecord

DIM = 384
BATCH = 5000


def _timed(call):
    cpu, started = time.process_time(), time.perf_counter()
    result = call()
    return result, time.perf_counter() - started, time.process_time() - cpu


def measure(rows: int) -> str:
    path = os.path.join(tempfile.mkdtemp(), "memories.sqlite3")
    rng = random.Random(rows)
    store = _native.MemoryStore(path, approximate_from_rows=rows)
    batch = []
    for i in range(rows):
        vector = array.array("f", [rng.gauss(0, 1) for _ in range(DIM)]).tobytes()
        batch.append(StoredRecord(f"r{i}", "c", "/s", "[]", "{}", 0.5, "2026-01-01T00:00:00", i,
                                  "2026-01-01T00:00:00", "", False, vector))
        if len(batch) == BATCH:
            store.save(batch)
            batch = []
    if batch:
        store.save(batch)
    store.close()
    builder, opened, _ = _timed(lambda: _native.MemoryStore(path, approximate_from_rows=rows))
    _, build_wall, build_cpu = _timed(builder.build_index)
    assert builder.index_status()["source"] == "built"
    builder.close()
    saved = os.path.join(os.path.dirname(path), "memories.sqlite3-ann")
    size = sum(os.path.getsize(os.path.join(saved, f)) for f in os.listdir(saved))
    later = _native.MemoryStore(path, approximate_from_rows=rows)
    _, load_wall, load_cpu = _timed(later.build_index)
    assert later.index_status()["source"] == "loaded", later.index_status()
    later.close()
    return (
        f"{rows} records x{DIM}: open (mirror load) {opened:.2f} s; index build {build_wall:.1f} s wall, "
        f"{build_cpu:.1f} s CPU; saved {size / 1e6:.0f} MB; load in a new store object "
        f"{load_wall:.2f} s wall, {load_cpu:.2f} s CPU"
    )


if __name__ == "__main__":
    for size in sys.argv[1:] or ["50000"]:
        print(measure(int(size)), flush=True)
