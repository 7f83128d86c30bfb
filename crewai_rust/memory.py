"""Memory component: the storage hook of ``crewai.memory.unified_memory.Memory``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crewai_rust._backend import NativeModuleMissingError, load_native, native_import_error, use_rust


if TYPE_CHECKING:
    from crewai.memory.storage.backend import StorageBackend


def storage_for_spec(spec: str) -> StorageBackend | None:
    """The storage ``Memory`` should use for a string ``storage`` spec, or None for upstream's.

    Called by the fork's patch to ``Memory`` after any factory registered with
    ``set_memory_storage_factory`` declined the spec and before the built-in
    LanceDB selection, for the default (``"lancedb"``) and path specs only.
    Returns None whenever the memory component resolves to upstream Python,
    which is always until the Rust storage lands.
    """
    # Resolving validates the switches and raises where Rust is required but
    # missing; "memory" is not in IMPLEMENTED_COMPONENTS until RustMemoryStorage
    # lands, so upstream's storage is used.
    use_rust("memory")
    return None


def batch_dedup(items: Sequence[Any], threshold: float) -> int:
    """Upstream's intra-batch dedup (``EncodingFlow.intra_batch_dedup``) on the Rust kernel.

    ``items`` are the flow's ``ItemState`` objects; each one found to be a
    near-duplicate (cosine ``>= threshold``) of an earlier kept item gets
    ``dropped = True``. Items already dropped, or without an embedding, are
    neither compared nor dropped, as upstream. Returns how many were dropped.
    Requires the native module.
    """
    native = load_native()
    if native is None:
        raise NativeModuleMissingError(f"crewai_rust._native is not importable: {native_import_error()}")
    vectors = [[] if item.dropped else item.embedding for item in items]
    flags = native.batch_dedup_flags(vectors, threshold)
    dropped = 0
    for item, flag in zip(items, flags):
        if flag:
            item.dropped = True
            dropped += 1
    return dropped
