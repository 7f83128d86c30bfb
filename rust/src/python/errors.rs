//! Errors in one place: the panic guard, the exception types shared by the
//! components, database errors as `sqlite3`'s exceptions, and the validation of
//! numbers every entry point applies before using them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::database::{DbError, ErrorKind};

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
pub(crate) fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
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

/// The `sqlite3` exception a database error becomes, so upstream code that
/// catches `sqlite3.Error` (and matches SQLite's messages) works unchanged.
pub(crate) fn db_error(py: Python<'_>, err: DbError) -> PyErr {
    let class = match err.kind {
        ErrorKind::Operational => "OperationalError",
        ErrorKind::Integrity => "IntegrityError",
        ErrorKind::Database => "DatabaseError",
        ErrorKind::Programming => "ProgrammingError",
    };
    match py.import("sqlite3").and_then(|m| m.getattr(class)).and_then(|cls| cls.call1((err.message.clone(),))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(import_failed) => import_failed,
    }
}

pub(crate) fn programming_error(py: Python<'_>, message: String) -> PyErr {
    db_error(py, DbError { kind: ErrorKind::Programming, message })
}

/// A timeout in seconds as a `Duration`: `ValueError` for NaN, negative or
/// non-finite values and for values too large to represent (never a panic).
pub(crate) fn timeout_seconds(field: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!("{field} must be a finite, non-negative number of seconds, got {value}"))
    })
}
