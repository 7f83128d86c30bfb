//! PyO3 bindings: `crewai_rust._native`. Thin wrappers over the plain modules;
//! the Python package `crewai_rust` owns the public API and its docstrings.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{build_info as info, vector};

create_exception!(
    _native,
    RustPanicError,
    PyRuntimeError,
    "A panic inside crewai_rust's native code, raised as a Python exception instead of aborting."
);

/// Run `f`, turning a Rust panic into `RustPanicError`.
///
/// PyO3 already stops panics at the FFI boundary, but as `PanicException`, a
/// `BaseException` that `except Exception` in crewai's own code would not
/// catch; an ordinary `RuntimeError` subclass keeps a crew's error handling
/// working.
fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            Err(RustPanicError::new_err(format!("Rust panic in crewai_rust: {message}")))
        }
    }
}

#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let built = info::build_info();
    let dict = PyDict::new(py);
    dict.set_item("version", built.version)?;
    dict.set_item("git_sha", built.git_sha)?;
    dict.set_item("profile", built.profile)?;
    dict.set_item("target", built.target)?;
    dict.set_item("features", built.features)?;
    Ok(dict)
}

#[pyfunction]
fn batch_dedup_flags(py: Python<'_>, vectors: Vec<Vec<f64>>, threshold: f64) -> PyResult<Vec<bool>> {
    if threshold.is_nan() {
        return Err(PyValueError::new_err("threshold must be a number, got NaN"));
    }
    guarded(|| Ok(py.detach(|| vector::batch_dedup_flags(&vectors, threshold))))
}

/// Panics on purpose, with or without the GIL held; tests prove a panic
/// surfaces as `RustPanicError` rather than aborting the interpreter.
#[pyfunction]
#[pyo3(signature = (message, release_gil = false))]
fn _panic_for_tests(py: Python<'_>, message: String, release_gil: bool) -> PyResult<()> {
    guarded(|| {
        if release_gil {
            py.detach(|| panic!("{message}"))
        } else {
            panic!("{message}")
        }
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RustPanicError", m.py().get_type::<RustPanicError>())?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(batch_dedup_flags, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    Ok(())
}
