"""Memory workloads.

* memory.batch_dedup: remember_many's intra-batch dedup kernel.
* memory.save_1 ... memory.delete_categories: the storage backend, upstream's
  ``LanceDBStorage`` vs ``crewai_rust.memory.RustMemoryStorage`` on identical
  seeded stores of N rows (1k/10k x 384/1536 dims, 50k x 384 in the full run).
* memory.remember / memory.recall: ``Memory`` end to end over each storage
  (fake deterministic embedder, no LLM call).
* memory.search_index: search of a 50k store of clustered, embedding-like
  vectors through RustMemoryStorage's HNSW index, with its recall@10 against
  exact search (full run only).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crewai_rust._backend import every_component_forced, forced_backend
from crewai_rust.bench import Case, quiet_runtime, workload


def _batch(n: int, dims: int, duplicate_share: float, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    vectors: list[list[float]] = []
    for _ in range(n):
        if vectors and rng.random() < duplicate_share:
            base = rng.choice(vectors)
            vectors.append([x + rng.gauss(0, 1e-4) for x in base])
        else:
            vectors.append([rng.gauss(0, 1) for _ in range(dims)])
    return vectors


@workload(
    "memory.batch_dedup",
    component="memory",
    description="remember_many's intra-batch dedup: upstream EncodingFlow.intra_batch_dedup "
                "vs crewai_rust.memory.batch_dedup on the same ItemStates",
)
def batch_dedup_cases(quick: bool) -> Iterator[Case]:
    from crewai.memory.encoding_flow import EncodingFlow, ItemState
    from crewai.memory.types import MemoryConfig

    from crewai_rust.memory import batch_dedup

    config = MemoryConfig()
    flow = EncodingFlow(storage=None, llm=None, embedder=None, config=config)
    sizes = [(100, 384)] if quick else [(100, 384), (100, 1536)]
    for n, dims in sizes:
        items = [ItemState(content=f"item {i}", embedding=v)
                 for i, v in enumerate(_batch(n, dims, 0.2, seed=n * dims))]

        def upstream(items: list[ItemState] = items) -> list[bool]:
            for item in items:
                item.dropped = False
            flow.state.items = items
            flow.state.items_dropped_dedup = 0
            # The fork's flow hands the loop to Rust when the memory component
            # is on: force upstream's Python loop for this side.
            with forced_backend("memory", "python"):
                flow.intra_batch_dedup()
            return [item.dropped for item in items]

        def rust(items: list[ItemState] = items) -> list[bool]:
            for item in items:
                item.dropped = False
            batch_dedup(items, config.batch_dedup_threshold)
            return [item.dropped for item in items]

        def check(expected: list[bool], got: list[bool]) -> None:
            assert expected == got, "Rust dedup dropped different items than upstream"
            assert any(expected), "the generated batch has no duplicates to find"

        yield Case(f"{n}x{dims}", upstream, rust, check)


# ---------------------------------------------------------------------------
# Storage and Memory end to end: upstream's LanceDBStorage vs RustMemoryStorage
# ---------------------------------------------------------------------------
#
# Each dataset (rows x dims) is generated once (seeded), saved into one
# LanceDB directory and one RustMemoryStorage directory in batches of 1,000
# (the "pristine" pair), and reused by every workload below. Read-only
# workloads share one opened copy of the pair; every workload that writes gets
# fresh copies of both directories, so each side starts from identical data
# and no workload sees another's writes. All directories live in one
# temporary directory removed at exit.

_BATCH = 1_000
_QUICK_SIZES = ((1_000, 384),)
_FULL_SIZES = ((1_000, 384), (1_000, 1536), (10_000, 384), (10_000, 1536), (50_000, 384))
_TEAMS, _PROJECTS, _USERS = 5, 4, 10
_CATEGORIES = ("decision", "fact", "preference", "task", "incident", "customer", "architecture", "meeting")
_CATEGORY_WEIGHTS = (0.3, 0.25, 0.1, 0.1, 0.06, 0.08, 0.06, 0.05)
# The last _ARCHIVED_ROWS rows of every dataset carry only this category:
# memory.delete_categories deletes and restores them.
_ARCHIVED, _ARCHIVED_ROWS = "archived", 10
_SEARCH_SCOPE = "/org/team1"
_SEARCH_CATEGORIES = ["decision", "fact"]
_LIMIT = 10
_RECALL_QUERY = "What did team one decide about the release rollout?"
_BASE_TIME = datetime(2025, 1, 1)

_scratch_dir: tempfile.TemporaryDirectory[str] | None = None


def _scratch() -> Path:
    global _scratch_dir
    if _scratch_dir is None:
        _scratch_dir = tempfile.TemporaryDirectory(prefix="crewai-rust-bench-memory-")
    return Path(_scratch_dir.name)


def _sizes(quick: bool) -> tuple[tuple[int, int], ...]:
    return _QUICK_SIZES if quick else _FULL_SIZES


def _label(rows: int, dims: int) -> str:
    return f"{rows // 1000}k x{dims}"


def _unit_vectors(rng: Any, n: int, dims: int) -> Any:
    import numpy as np

    vectors = rng.standard_normal((n, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _join_compactions() -> None:
    # LanceDBStorage compacts in a daemon thread when it opens a table and
    # every 100 saves; wait for those so they do not run into the next timing.
    for thread in threading.enumerate():
        if thread.name == "lancedb-compact":
            thread.join()


def _clustered_unit_vectors(rng: Any, n: int, dims: int, clusters: int = 500) -> Any:
    """Unit vectors around ``clusters`` centres: text embeddings cluster by topic,
    unlike uniform noise (the hardest case for a graph index)."""
    import numpy as np

    centres = _unit_vectors(rng, clusters, dims)
    vectors = centres[rng.integers(clusters, size=n)] + 0.35 * _unit_vectors(rng, n, dims)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


class _Dataset:
    """``rows`` seeded records of ``dims`` dims (unit vectors), saved once into both backends."""

    def __init__(self, rows: int, dims: int, clustered: bool = False) -> None:
        import numpy as np

        self.rows, self.dims, self.clustered = rows, dims, clustered
        rng = np.random.default_rng(rows * 7919 + dims + clustered)
        self.vectors = _clustered_unit_vectors(rng, rows, dims) if clustered else _unit_vectors(rng, rows, dims)
        self.ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)]
        self.scopes: list[str] = []
        self.categories: list[list[str]] = []
        draws = rng.random((rows, 4))
        weights = np.array(_CATEGORY_WEIGHTS) / sum(_CATEGORY_WEIGHTS)
        for i in range(rows):
            if draws[i, 0] < 0.8:
                self.scopes.append(f"/org/team{int(draws[i, 1] * _TEAMS)}/proj{int(draws[i, 2] * _PROJECTS)}")
            else:
                self.scopes.append(f"/users/user{int(draws[i, 1] * _USERS)}")
            if i >= rows - _ARCHIVED_ROWS:
                self.categories.append([_ARCHIVED])
            else:
                count = 1 + int(draws[i, 3] * 3)
                picks = rng.choice(len(_CATEGORIES), size=count, replace=False, p=weights)
                self.categories.append([_CATEGORIES[k] for k in sorted(picks)])
        self.importance = [round(float(x), 2) for x in rng.uniform(0.1, 0.95, rows)]
        scope_info_rows = sum(s.startswith(_SEARCH_SCOPE + "/") for s in self.scopes)
        assert scope_info_rows >= _LIMIT, "the generated dataset has too few rows in the searched scope"
        kind = "clustered" if clustered else "uniform"
        self.lance_dir = _scratch() / f"pristine-{rows}x{dims}-{kind}-lancedb"
        self.rust_dir = _scratch() / f"pristine-{rows}x{dims}-{kind}-rust"
        self._read_pair: _Pair | None = None
        self.index_status: dict[str, Any] = {"state": "off"}
        self._populate()

    def record(self, i: int, embedding: bool = True) -> Any:
        from crewai.memory.types import MemoryRecord

        created = _BASE_TIME + timedelta(seconds=37 * i)
        return MemoryRecord(
            id=self.ids[i],
            content=f"Memory {i}: the {self.categories[i][0]} noted for {self.scopes[i]} "
                    f"while working on ticket #{i * 13 % 9973}.",
            scope=self.scopes[i],
            categories=list(self.categories[i]),
            metadata={"ticket": i * 13 % 9973, "author": f"agent-{i % 7}", "tags": ["bench", f"t{i % 3}"]},
            importance=self.importance[i],
            created_at=created,
            last_accessed=created,
            embedding=self.vectors[i].tolist() if embedding else None,
            source=f"session-{i % 11}",
        )

    def records(self, start: int, stop: int) -> list[Any]:
        return [self.record(i) for i in range(start, stop)]

    def query(self, seed: int) -> list[float]:
        """A unit query near one stored vector, so the top hits are meaningful."""
        import numpy as np

        rng = np.random.default_rng(seed)
        near = self.vectors[int(rng.integers(self.rows - _ARCHIVED_ROWS))]
        noise = _unit_vectors(rng, 1, self.dims)[0]
        q = near + (0.2 if self.clustered else 0.8) * noise
        q /= np.linalg.norm(q)
        return [float(x) for x in q.astype(np.float32)]

    def _populate(self) -> None:
        from crewai.memory.storage.lancedb_storage import LanceDBStorage

        from crewai_rust.memory import RustMemoryStorage

        lance = LanceDBStorage(path=self.lance_dir)
        rust = RustMemoryStorage(path=self.rust_dir)
        for start in range(0, self.rows, _BATCH):
            batch = self.records(start, min(start + _BATCH, self.rows))
            lance.save(batch)
            rust.save(batch)
        # A store in steady use is compacted (LanceDBStorage does it every 100
        # saves and on open): time reads against a compacted table.
        lance.optimize()
        _join_compactions()
        rust.close()
        assert lance.count() == self.rows, f"LanceDB holds {lance.count()} rows, expected {self.rows}"

    def copy(self, tag: str) -> _Pair:
        """Fresh copies of both pristine directories, opened."""
        kind = "clustered" if self.clustered else "uniform"
        lance_dir = _scratch() / f"{tag}-{self.rows}x{self.dims}-{kind}-lancedb"
        rust_dir = _scratch() / f"{tag}-{self.rows}x{self.dims}-{kind}-rust"
        for path in (lance_dir, rust_dir):
            if path.exists():
                shutil.rmtree(path)
        shutil.copytree(self.lance_dir, lance_dir)
        shutil.copytree(self.rust_dir, rust_dir)
        return _Pair(lance_dir, rust_dir)

    def read_pair(self) -> _Pair:
        """The copy shared by the read-only workloads (never written to)."""
        if self._read_pair is None:
            self._read_pair = self.copy("read")
            self.index_status = _settle_index(self._read_pair.rust, self)
        return self._read_pair


class _Pair:
    def __init__(self, lance_dir: Path, rust_dir: Path) -> None:
        from crewai.memory.storage.lancedb_storage import LanceDBStorage

        from crewai_rust.memory import RustMemoryStorage

        self.lance_dir, self.rust_dir = lance_dir, rust_dir
        self.upstream = LanceDBStorage(path=lance_dir)
        self.rust = RustMemoryStorage(path=rust_dir)
        self.index_status: dict[str, Any] = {"state": "off"}
        _join_compactions()

    def close(self, rust_closed: bool = False) -> None:
        _join_compactions()
        if not rust_closed:
            self.rust.close()
        shutil.rmtree(self.lance_dir, ignore_errors=True)
        shutil.rmtree(self.rust_dir, ignore_errors=True)


_DATASETS: dict[tuple[int, int, bool], _Dataset] = {}


def _dataset(rows: int, dims: int, clustered: bool = False) -> _Dataset:
    if (rows, dims, clustered) not in _DATASETS:
        _DATASETS[(rows, dims, clustered)] = _Dataset(rows, dims, clustered)
    return _DATASETS[(rows, dims, clustered)]


_SETTLING_SEARCHES = 48


def _settle_index(storage: Any, ds: _Dataset, threshold: int | None = None) -> dict[str, Any]:
    """Bring a store large enough for the HNSW index to its steady state before timing.

    A process builds the index in the background on its first large search,
    and checks the first 32 searches through it against exact search (switching
    back to exact search when it finds less than 95% of the exact top 10).
    Both happen here, untimed, with queries other than the timed ones.
    """
    from crewai_rust.memory import DEFAULT_APPROXIMATE_FROM_ROWS

    if ds.rows < (threshold or DEFAULT_APPROXIMATE_FROM_ROWS):
        return storage.index_status()
    storage.optimize()
    for seed in range(_SETTLING_SEARCHES):
        storage.search(ds.query(seed=10_000 + seed), limit=_LIMIT)
    return storage.index_status()


def _index_note(status: dict[str, Any]) -> str:
    if status["state"] == "ready":
        return f", HNSW recall@10 {status['measured_recall']:.3f}"
    if status["state"] == "disabled":
        return f", exact: HNSW recall@10 {status['measured_recall']:.2f} < 0.95"
    return ""


def _overlapping_ranking(expected: list[tuple[str, float]], got: list[tuple[str, float]], what: str) -> None:
    """An approximate top 10: at least 9 of upstream's exact 10, each with upstream's score."""
    upstream_scores = dict(expected)
    common = [(i, score) for i, score in got if i in upstream_scores]
    assert len(common) >= len(expected) - 1, f"{what}: only {len(common)} of upstream's {len(expected)} hits"
    for record_id, score in common:
        assert math.isclose(upstream_scores[record_id], score, rel_tol=_SCORE_TOLERANCE, abs_tol=_SCORE_TOLERANCE)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True), f"{what}: not best first"


# --- result comparison ------------------------------------------------------

_SCORE_TOLERANCE = 1e-4


def _hits(results: list[tuple[Any, float]]) -> list[tuple[str, float]]:
    return [(record.id, float(score)) for record, score in results]


def _same_ranking(expected: list[tuple[str, float]], got: list[tuple[str, float]], what: str,
                  tolerance: float = _SCORE_TOLERANCE) -> None:
    """Same ids in the same order with the same scores (float32 rounding aside: only near-ties may swap)."""
    assert len(got) == len(expected), f"{what}: upstream returned {len(expected)} hits, rust {len(got)}"
    assert expected, f"{what}: no hits to compare"
    upstream_scores = dict(expected)
    for rank, ((up_id, up_score), (rs_id, rs_score)) in enumerate(zip(expected, got)):
        assert math.isclose(up_score, rs_score, rel_tol=tolerance, abs_tol=tolerance), \
            f"{what}: score at rank {rank} is {up_score!r} upstream, {rs_score!r} rust"
        if up_id != rs_id:
            tie = (rs_id in upstream_scores
                   and math.isclose(upstream_scores[rs_id], rs_score, rel_tol=tolerance, abs_tol=tolerance)) \
                or math.isclose(rs_score, expected[-1][1], rel_tol=tolerance, abs_tol=tolerance)
            assert tie, f"{what}: rank {rank} is {up_id} upstream but {rs_id} rust"


def _record_fields(record: Any) -> dict[str, Any]:
    return record.model_dump(exclude={"last_accessed"})


def _same_record(expected: Any, got: Any, what: str) -> None:
    import numpy as np

    assert expected is not None and got is not None, \
        f"{what}: record missing (upstream {expected}, rust {got})"
    assert _record_fields(expected) == _record_fields(got), \
        f"{what}: records differ:\n upstream {_record_fields(expected)}\n rust     {_record_fields(got)}"
    assert expected.embedding is not None and got.embedding is not None, f"{what}: embedding missing"
    assert np.allclose(expected.embedding, got.embedding, rtol=0, atol=1e-6), f"{what}: embeddings differ"


# --- save -------------------------------------------------------------------


def _save_cases(quick: bool, per_call: int) -> Iterator[Case]:
    import numpy as np

    for rows, dims in _sizes(quick):
        ds = _dataset(rows, dims)
        pair = ds.copy(f"save{per_call}")
        # A pool of new records (fresh vectors, dataset-like fields); each call
        # gives the records it saves new ids, so both sides only ever insert.
        pool_size = max(per_call, 100)
        vectors = _unit_vectors(np.random.default_rng(dims + per_call), pool_size, dims)
        pools = []
        for _ in range(2):
            pool = []
            for k in range(pool_size):
                record = ds.record(k)
                record.embedding = vectors[k].tolist()
                record.content = f"New memory {k} for {record.scope}"
                pool.append(record)
            pools.append(pool)

        def make(storage: Any, pool: list[Any], pool_size: int = pool_size) -> Callable[[], list[str]]:
            counter = itertools.count()

            def save() -> list[str]:
                batch = []
                for _ in range(per_call):
                    n = next(counter)
                    record = pool[n % pool_size]
                    record.id = f"saved-{n}"
                    batch.append(record)
                storage.save(batch)
                return [record.id for record in batch]

            return save

        def check(up_ids: list[str], rs_ids: list[str], pair: _Pair = pair, rows: int = rows) -> None:
            assert up_ids == rs_ids and len(rs_ids) == per_call
            for record_id in (rs_ids[0], rs_ids[-1]):
                _same_record(pair.upstream.get_record(record_id), pair.rust.get_record(record_id),
                             f"saved record {record_id}")
            assert pair.upstream.count() == pair.rust.count() == rows + per_call, \
                f"counts after one save: upstream {pair.upstream.count()}, rust {pair.rust.count()}, " \
                f"expected {rows + per_call}"

        yield Case(_label(rows, dims), make(pair.upstream, pools[0]), make(pair.rust, pools[1]), check)
        pair.close()


@workload("memory.save_1", component="memory",
          description="storage.save of 1 record (384/1536-dim embedding, scope, 1-3 categories, metadata) "
                      "into a store of N rows (it grows by one per call); "
                      "LanceDBStorage vs RustMemoryStorage")
def save_one_cases(quick: bool) -> Iterator[Case]:
    """``save([record])`` into a store already holding N rows.

    Both sides start from copies of the same N-row store and insert records
    with new ids (the store grows by one row per call). The check reads the
    saved record back from both stores and compares every field and the
    embedding, and the row counts.
    """
    return _save_cases(quick, 1)


@workload("memory.save_100", component="memory",
          description="storage.save of a batch of 100 records in one call into a store of N rows "
                      "(it grows by 100 per call); LanceDBStorage vs RustMemoryStorage")
def save_batch_cases(quick: bool) -> Iterator[Case]:
    """``save(records)`` of 100 records in one call into a store already holding N rows.

    As memory.save_1, with 100 new records per call (what remember_many's
    bulk insert does).
    """
    return _save_cases(quick, 100)


# --- search -----------------------------------------------------------------


def _search_cases(quick: bool, what: str, sizes: Any = None, clustered: bool = False,
                  **filters: Any) -> Iterator[Case]:
    for rows, dims in sizes if sizes is not None else _sizes(quick):
        ds = _dataset(rows, dims, clustered)
        pair = ds.read_pair()
        query = ds.query(seed=rows + dims)
        # Filtered searches are always exact; unfiltered ones use the index once it is ready.
        approximate = not filters and ds.index_status["state"] == "ready"

        def make(storage: Any, query: list[float] = query) -> Callable[[], list[tuple[str, float]]]:
            return lambda: _hits(storage.search(query, limit=_LIMIT, **filters))

        def check(expected: list[tuple[str, float]], got: list[tuple[str, float]],
                  approximate: bool = approximate) -> None:
            if approximate:
                _overlapping_ranking(expected, got, what)
            else:
                _same_ranking(expected, got, what)
            assert len(got) == _LIMIT, f"{what}: {len(got)} hits, expected {_LIMIT}"

        note = _index_note(ds.index_status) if not filters else ""
        yield Case(_label(rows, dims) + note, make(pair.upstream), make(pair.rust), check)


@workload("memory.search", component="memory",
          description="storage.search top 10 by vector over N rows, no filter (exact L2, "
                      "score 1/(1+d^2)); LanceDBStorage vs RustMemoryStorage")
def search_cases(quick: bool) -> Iterator[Case]:
    """``search(query, limit=10)``: the 10 nearest of N rows, no filter.

    The query is a unit vector near one stored vector. The check compares ids,
    order and scores (to 1e-4; float32 near-ties may swap).
    """
    return _search_cases(quick, "search")


@workload("memory.search_index", component="memory",
          description="storage.search top 10, no filter, over 50k clustered (embedding-like) unit vectors "
                      "x384: LanceDBStorage's exact scan vs RustMemoryStorage's HNSW index, with its "
                      "recall@10 against exact search (quick: 5k rows, index from 5k)")
def search_index_cases(quick: bool) -> Iterator[Case]:
    """The approximate index at the default threshold (50,000 records).

    Uniform random vectors (the other workloads' data) are the worst case
    for a graph index; there RustMemoryStorage measures a low recall and
    keeps searching exactly (``memory.search`` at 50k says which). Text
    embeddings cluster by topic, as this dataset does (500 centres). The
    recall in the label is the store's own measurement over its first 32
    searches through the index; the check asks at least 9 of upstream's
    exact top 10 with upstream's scores.
    """
    from crewai_rust.memory import RustMemoryStorage

    # The quick run has a 5k store and lowers the threshold to it (the label says so).
    rows, threshold = (5_000, 5_000) if quick else (50_000, None)
    ds = _dataset(rows, 384, clustered=True)
    pair = ds.read_pair()
    if threshold is not None:
        pair.rust.close()
        pair.rust = RustMemoryStorage(path=pair.rust_dir, approximate_from_rows=threshold)
        ds.index_status = _settle_index(pair.rust, ds, threshold)
    status = ds.index_status
    assert status["state"] == "ready", f"the HNSW index is not in use on clustered data: {status}"
    assert status["measured_recall"] >= 0.95, f"HNSW recall@10 {status['measured_recall']} < 0.95"
    for case in _search_cases(quick, "search_index", sizes=((rows, 384),), clustered=True):
        if threshold is not None:
            case.label += f", index from {threshold // 1000}k rows"
        yield case


@workload("memory.search_scope", component="memory",
          description=f"storage.search top 10 within scope_prefix={_SEARCH_SCOPE!r} (~16% of N rows); "
                      "LanceDBStorage vs RustMemoryStorage")
def search_scope_cases(quick: bool) -> Iterator[Case]:
    """``search(query, scope_prefix="/org/team1", limit=10)``.

    About 16% of the rows are under the prefix; LanceDB pre-filters with its
    scope LIKE predicate, so both sides return the 10 nearest in the scope.
    """
    return _search_cases(quick, "search_scope", scope_prefix=_SEARCH_SCOPE)


@workload("memory.search_categories", component="memory",
          description=f"storage.search top 10 with categories={_SEARCH_CATEGORIES} (~55% of N rows match); "
                      "LanceDBStorage vs RustMemoryStorage")
def search_categories_cases(quick: bool) -> Iterator[Case]:
    """``search(query, categories=["decision", "fact"], limit=10)``.

    Upstream over-fetches 30 nearest then filters in Python; the Rust storage
    filters before ranking. With about half the rows matching, the 30 nearest
    hold at least 10 matches, so both return the same 10 (checked).
    """
    return _search_cases(quick, "search_categories", categories=_SEARCH_CATEGORIES)


# --- scans ------------------------------------------------------------------


def _scan_cases(quick: bool, call: Callable[[Any], Any], what: str) -> Iterator[Case]:
    for rows, dims in _sizes(quick):
        pair = _dataset(rows, dims).read_pair()

        def check(expected: Any, got: Any) -> None:
            assert expected == got, f"{what} differs:\n upstream {expected}\n rust     {got}"
            assert got, f"{what}: empty result"

        yield Case(_label(rows, dims), lambda s=pair.upstream: call(s), lambda s=pair.rust: call(s), check)


@workload("memory.list_scopes", component="memory",
          description="storage.list_scopes('/org') over N rows (the child scopes /org/team*); "
                      "LanceDBStorage vs RustMemoryStorage")
def list_scopes_cases(quick: bool) -> Iterator[Case]:
    """``list_scopes("/org")``: the immediate children of /org among N rows (80% of them under /org)."""
    return _scan_cases(quick, lambda s: s.list_scopes("/org"), "list_scopes")


@workload("memory.list_categories", component="memory",
          description="storage.list_categories() over all N rows (category -> count); "
                      "LanceDBStorage vs RustMemoryStorage")
def list_categories_cases(quick: bool) -> Iterator[Case]:
    """``list_categories()``: every category's count over the whole store (what remember's analysis asks)."""
    return _scan_cases(quick, lambda s: s.list_categories(), "list_categories")


@workload("memory.get_scope_info", component="memory",
          description=f"storage.get_scope_info({_SEARCH_SCOPE!r}): count, categories, oldest/newest, "
                      "child scopes; LanceDBStorage vs RustMemoryStorage")
def get_scope_info_cases(quick: bool) -> Iterator[Case]:
    """``get_scope_info("/org/team1")``: the ScopeInfo of a scope holding ~16% of N rows.

    The check compares every field (count, categories, oldest/newest, child scopes).
    """
    return _scan_cases(quick, lambda s: s.get_scope_info(_SEARCH_SCOPE).model_dump(), "get_scope_info")


# --- delete -----------------------------------------------------------------


@workload("memory.delete_categories", component="memory",
          description=f"storage.delete(categories=[{_ARCHIVED!r}]) of 10 of N rows, then save() of the same "
                      "10 rows so the next call deletes them again (time = delete + save of 10); "
                      "LanceDBStorage vs RustMemoryStorage")
def delete_categories_cases(quick: bool) -> Iterator[Case]:
    """``delete(categories=["archived"])`` removing 10 rows of an N-row store, plus restoring them.

    The bench times whole calls, so each call deletes the 10 "archived" rows
    and saves them back (one ``save`` of 10 records) to give the next call the
    same work: the time is delete + save(10), the store stays at N rows, and
    both sides delete the same 10 rows every call. Each side works on its own
    fresh copy of the store. The check compares the deleted counts (10) and
    the row counts afterwards.
    """
    for rows, dims in _sizes(quick):
        ds = _dataset(rows, dims)
        pair = ds.copy("delete")
        archived = ds.records(rows - _ARCHIVED_ROWS, rows)

        def make(storage: Any, archived: list[Any] = archived) -> Callable[[], int]:
            def delete_and_restore() -> int:
                deleted = storage.delete(categories=[_ARCHIVED])
                storage.save(archived)
                return deleted

            return delete_and_restore

        def check(expected: int, got: int, pair: _Pair = pair, rows: int = rows) -> None:
            assert expected == got == _ARCHIVED_ROWS, \
                f"deleted rows: upstream {expected}, rust {got}, expected {_ARCHIVED_ROWS}"
            assert pair.upstream.count() == pair.rust.count() == rows, \
                f"counts after delete + restore: upstream {pair.upstream.count()}, rust {pair.rust.count()}"

        yield Case(_label(rows, dims), make(pair.upstream), make(pair.rust), check)
        pair.close()


# --- Memory end to end ------------------------------------------------------


class _FakeEmbedder:
    """Deterministic embedder: a seeded unit vector per text (no network)."""

    def __init__(self, dims: int) -> None:
        self.dims = dims

    def __call__(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        out = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out.append(_unit_vectors(np.random.default_rng(seed), 1, self.dims)[0].tolist())
        return out


# About 10 MB of prose with non-ASCII text, appended to remember's content.
_LARGE_CONTENT = (" Lorem ipsum dolor sit amet, café, naïve, ✓ done." * 210_000)[: 10 * 1024 * 1024]


def _memories(ds: _Dataset, tag: str) -> tuple[_Pair, Any, Any, Any]:
    """Two ``Memory`` objects over fresh copies of the dataset: explicit LanceDB and Rust storages.

    The workloads call the first with the memory component forced to Python
    (none of the fork's memory hooks run on the upstream side) and the second
    with it forced to Rust.
    """
    from unittest.mock import MagicMock

    from crewai.memory.unified_memory import Memory

    pair = ds.copy(tag)
    embedder = _FakeEmbedder(ds.dims)
    # Never called: remember gets every field explicitly and recall is shallow.
    llm = MagicMock(name="llm")
    upstream = Memory(storage=pair.upstream, llm=llm, embedder=embedder)
    rust = Memory(storage=pair.rust, llm=llm, embedder=embedder)
    return pair, upstream, rust, llm


@workload("memory.remember", component="memory",
          description="Memory.remember(content, scope, categories, importance, metadata) end to end "
                      "(fake embedder, no LLM call: similarity search + insert) into N rows; "
                      "Memory(storage=LanceDBStorage) vs Memory(storage=RustMemoryStorage)")
def remember_cases(quick: bool) -> Iterator[Case]:
    """``Memory.remember`` with every field explicit, so no LLM analysis runs.

    Runs the whole EncodingFlow on the memory's save thread: embed (a
    deterministic fake embedder), look for similar records in the scope
    (consolidation search; the new contents are never near enough to trigger
    the LLM) and insert. Each call remembers a new text; the check compares
    the returned records, reads them back from both stores, compares row
    counts, and asserts the LLM was never called.
    """
    # The last case remembers 10 MB texts (a whole document as one memory) into the smallest store.
    sizes = [(rows, dims, "") for rows, dims in _sizes(quick)] + [(*_sizes(quick)[0], _LARGE_CONTENT)]
    for rows, dims, padding in sizes:
        ds = _dataset(rows, dims)
        pair, upstream_memory, rust_memory, llm = _memories(ds, "remember-large" if padding else "remember")

        def make(memory: Any, backend: str, padding: str = padding) -> Callable[[], Any]:
            counter = itertools.count()

            def remember() -> Any:
                n = next(counter)
                with every_component_forced(backend):  # type: ignore[arg-type]
                    return memory.remember(
                        f"Note {n}: the team agreed to ship the rollout behind flag f{n % 17}.{padding}",
                        scope="/org/team1/proj2", categories=["decision", "release"], importance=0.7,
                        metadata={"n": n, "source_doc": f"doc-{n % 5}"},
                    )

            return remember

        def check(expected: Any, got: Any, pair: _Pair = pair, rows: int = rows, llm: Any = llm) -> None:
            assert not llm.mock_calls, f"the LLM was called: {llm.mock_calls[:3]}"
            strip = lambda r: {k: v for k, v in r.model_dump().items()
                               if k not in ("id", "created_at", "last_accessed")}
            assert strip(expected) == strip(got), \
                f"remembered records differ: {strip(expected)} vs {strip(got)}"
            up_stored, rs_stored = pair.upstream.get_record(expected.id), pair.rust.get_record(got.id)
            assert up_stored is not None and rs_stored is not None, "remembered record not stored"
            assert strip(up_stored) == strip(rs_stored) == strip(expected)
            assert pair.upstream.count() == pair.rust.count() == rows + 1

        label = _label(rows, dims) + (", 10 MB content" if padding else "")
        with quiet_runtime():
            yield Case(label, make(upstream_memory, "python"), make(rust_memory, "rust"), check)
        upstream_memory.close()
        rust_memory.close()  # closes its storage
        pair.close(rust_closed=True)


@workload("memory.recall", component="memory",
          description="Memory.recall(query, depth='shallow') end to end over N rows: embed, top-10 search, "
                      "composite scores, touch_records; Memory(storage=LanceDBStorage) vs "
                      "Memory(storage=RustMemoryStorage)")
def recall_cases(quick: bool) -> Iterator[Case]:
    """``Memory.recall(query, depth="shallow")``: no LLM.

    Embeds the query (fake deterministic embedder), searches the 10 nearest
    of N rows, computes upstream's composite score (semantic, recency,
    importance) and touches the hits' ``last_accessed`` (a write on both
    backends). The check compares ids, order and composite scores.
    """
    for rows, dims in _sizes(quick):
        ds = _dataset(rows, dims)
        pair, upstream_memory, rust_memory, llm = _memories(ds, "recall")
        pair.index_status = _settle_index(pair.rust, ds)

        def make(memory: Any, backend: str) -> Callable[[], list[tuple[str, float]]]:
            def recall() -> list[tuple[str, float]]:
                with every_component_forced(backend):  # type: ignore[arg-type]
                    return [(m.record.id, m.score)
                            for m in memory.recall(_RECALL_QUERY, depth="shallow", limit=_LIMIT)]

            return recall

        approximate = pair.index_status["state"] == "ready"

        def check(expected: list[tuple[str, float]], got: list[tuple[str, float]], llm: Any = llm,
                  approximate: bool = approximate) -> None:
            assert not llm.mock_calls, f"the LLM was called: {llm.mock_calls[:3]}"
            if approximate:
                _overlapping_ranking(expected, got, "recall")
            else:
                _same_ranking(expected, got, "recall", tolerance=1e-3)
            assert len(got) == _LIMIT

        with quiet_runtime():
            yield Case(_label(rows, dims) + _index_note(pair.index_status), make(upstream_memory, "python"),
                       make(rust_memory, "rust"), check)
        upstream_memory.close()
        rust_memory.close()  # closes its storage
        pair.close(rust_closed=True)
