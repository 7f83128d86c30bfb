"""Memory workloads."""

from __future__ import annotations

import random
from collections.abc import Iterator

from crewai_rust.bench import Case, workload


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
