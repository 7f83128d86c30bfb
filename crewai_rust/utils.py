"""Backend selection under the module path the original design documented
(``from crewai_rust.utils import configure_rust_components``); the same
objects as ``crewai_rust``'s."""

from __future__ import annotations

from crewai_rust._backend import (
    clear_rust_component_overrides,
    component_status,
    configure_rust_components,
    use_rust,
)

__all__ = ["clear_rust_component_overrides", "component_status", "configure_rust_components", "use_rust"]
