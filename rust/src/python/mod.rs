//! PyO3 bindings: `crewai_rust._native`, one file per component of the Python
//! package (`crewai_rust/<component>.py` -> `python/<component>.rs`), thin
//! wrappers over the plain modules (`crate::<component>`); the Python package
//! owns the public API and its docstrings. Errors live in `errors`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::build_info as info;

mod database;
mod errors;
mod memory;
mod serialization;
mod tasks;

use errors::{guarded, RustPanicError};

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
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    database::register(m)?;
    serialization::register(m)?;
    memory::register(m)?;
    tasks::register(m)?;
    Ok(())
}
