//! Rust core of the crewai fork.
//!
//! The plain modules here know nothing of Python and are tested with
//! `cargo test`; `python` (behind the `python` feature) is the thin PyO3
//! layer that maturin builds into `crewai_rust._native`.

pub mod ann;
pub mod build_info;
pub mod json;
pub mod memory;
pub mod sqlite;
pub mod vector;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_memory;
#[cfg(feature = "python")]
mod python_serialization;
