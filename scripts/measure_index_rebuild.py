"""What a new process pays to rebuild a large memory store's approximate index.

Usage: ``python scripts/measure_index_rebuild.py 50000 200000`` (with the fork
installed, release build). For each size: a store of that many random
384-dimensional records, then a new store object on the file (what a new
process does): the time to load its mirror, and the wall and CPU time of the
HNSW build. There is no upstream side to compare: LanceDB keeps no such index
for this table.
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
    started = time.perf_counter()
    fresh = _native.MemoryStore(path, approximate_from_rows=rows)
    opened = time.perf_counter() - started
    cpu, started = time.process_time(), time.perf_counter()
    fresh.build_index()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    fresh.close()
    return f"{rows} records x{DIM}: open (mirror load) {opened:.2f} s; index build {wall:.1f} s wall, {cpu:.1f} s CPU"


if __name__ == "__main__":
    for size in sys.argv[1:] or ["50000"]:
        print(measure(int(size)), flush=True)
