//! The database component's bindings: `SqlitePool`, its connections and rows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple};
use rusqlite::types::ValueRef;

use super::errors::{db_error, guarded, programming_error, timeout_seconds};
use super::serialization::{CellDecoder, CollectorPaused};
use crate::database::{self as sqlite, DbError, ErrorKind, Value};

fn to_value(py: Python<'_>, index: usize, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        Ok(Value::Null)
    } else if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyInt>() {
        obj.extract::<i64>().map(Value::Integer).map_err(|_| {
            PyOverflowError::new_err("Python int too large to convert to SQLite INTEGER")
        })
    } else if obj.is_instance_of::<PyFloat>() {
        Ok(Value::Real(obj.extract::<f64>()?))
    } else if obj.is_instance_of::<PyString>() {
        Ok(Value::Text(obj.extract::<String>()?))
    } else if let Ok(bytes) = obj.cast::<PyBytes>() {
        Ok(Value::Blob(bytes.as_bytes().to_vec()))
    } else if let Ok(array) = obj.cast::<PyByteArray>() {
        Ok(Value::Blob(array.to_vec()))
    } else if obj.is_instance_of::<PyMemoryView>() {
        let data: Vec<u8> = py.import("builtins")?.getattr("bytes")?.call1((obj,))?.extract()?;
        Ok(Value::Blob(data))
    } else {
        Err(programming_error(
            py,
            format!(
                "Error binding parameter {}: type '{}' is not supported",
                index + 1,
                obj.get_type().name()?
            ),
        ))
    }
}

fn to_values(py: Python<'_>, params: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Value>> {
    let Some(params) = params else { return Ok(Vec::new()) };
    if params.is_instance_of::<PyDict>() {
        return Err(programming_error(
            py,
            "crewai_rust's SQLite connections take positional parameters only".to_string(),
        ));
    }
    let mut values = Vec::new();
    for (index, item) in params.try_iter()?.enumerate() {
        values.push(to_value(py, index, &item?)?);
    }
    Ok(values)
}

/// `value`, a cell of `column`, as `sqlite3` returns it.
fn to_py<'py>(py: Python<'py>, value: ValueRef<'_>, column: &str) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        ValueRef::Null => py.None().into_bound(py),
        ValueRef::Integer(i) => i.into_pyobject(py)?.into_any(),
        ValueRef::Real(f) => f.into_pyobject(py)?.into_any(),
        ValueRef::Text(bytes) => text_to_py(py, bytes, column)?,
        ValueRef::Blob(b) => PyBytes::new(py, b).into_any(),
    })
}

/// SQLite text as a str, decoded in one pass by CPython. Text that is not
/// UTF-8 raises `sqlite3`'s own `OperationalError`, message included.
fn text_to_py<'py>(py: Python<'py>, bytes: &[u8], column: &str) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the pointer and length describe `bytes`; the GIL is held.
    let decoded = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyUnicode_FromStringAndSize(bytes.as_ptr().cast(), bytes.len() as pyo3::ffi::Py_ssize_t),
        )
    };
    decoded.map_err(|_| undecodable_text(py, column, bytes))
}

/// `sqlite3`'s message for a text cell that is not UTF-8: formatted into a
/// 199-byte C buffer (so cut at 198 bytes, and the text at its first NUL),
/// then decoded as ASCII with every other byte replaced.
fn undecodable_text(py: Python<'_>, column: &str, text: &[u8]) -> PyErr {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let mut message = b"Could not decode to UTF-8 column '".to_vec();
    message.extend_from_slice(column.as_bytes());
    message.extend_from_slice(b"' with text '");
    message.extend_from_slice(text);
    message.push(b'\'');
    message.truncate(198);
    let message = message.iter().map(|&b| if b.is_ascii() { b as char } else { '\u{fffd}' }).collect();
    db_error(py, DbError { kind: ErrorKind::Operational, message })
}

/// The rows a statement returned, read from SQLite with the GIL released and
/// turned into Python objects when the cursor is fetched: as `sqlite3`'s
/// tuples, or straight into the dicts a store builds from them.
#[pyclass(module = "crewai_rust._native", frozen)]
struct SqliteRows {
    columns: Vec<String>,
    rows: sqlite::Rows,
}

#[pymethods]
impl SqliteRows {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Rows `start..stop` (to the end when `stop` is None) as tuples.
    #[pyo3(signature = (start = 0, stop = None))]
    fn tuples<'py>(&self, py: Python<'py>, start: usize, stop: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let stop = stop.map_or(self.rows.len(), |stop| stop.min(self.rows.len()));
        let tuples = (start..stop)
            .map(|i| {
                let row = self.rows.row(i).zip(&self.columns).map(|(v, column)| to_py(py, v, column));
                PyTuple::new(py, row.collect::<PyResult<Vec<_>>>()?)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, tuples)
    }

    /// Rows `start..` as dicts keyed by column name, in column order; the
    /// values of `json_columns` go through `decode` (`json.loads` or a
    /// `JsonDecoder`, which decodes here without a call into Python).
    #[pyo3(signature = (json_columns, decode, start = 0))]
    fn records<'py>(
        &self,
        py: Python<'py>,
        json_columns: Vec<String>,
        decode: &Bound<'py, PyAny>,
        start: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<Bound<'py, PyString>> = self.columns.iter().map(|name| PyString::intern(py, name)).collect();
        let decoded: Vec<bool> = self.columns.iter().map(|name| json_columns.contains(name)).collect();
        let mut cells = CellDecoder::new(decode);
        // Each record starts as a copy of a dict holding every key: CPython
        // copies its key table in one piece, where inserting the keys one
        // by one would grow the table twice per record.
        let template = PyDict::new(py);
        for key in &keys {
            template.set_item(key, py.None())?;
        }
        let mut records = Vec::with_capacity(self.rows.len().saturating_sub(start));
        // Only fresh dicts and values are made here, unless `decode` is a Python callable.
        let _paused = cells.is_native().then(|| CollectorPaused::new(py));
        for i in start..self.rows.len() {
            let record = template.copy()?;
            for (((key, value), &json), column) in keys.iter().zip(self.rows.row(i)).zip(&decoded).zip(&self.columns) {
                let item = match value {
                    ValueRef::Text(bytes) if json => match std::str::from_utf8(bytes) {
                        Ok(text) => cells.decode(text)?,
                        Err(_) => return Err(undecodable_text(py, column, bytes)),
                    },
                    other if json => decode.call1((to_py(py, other, column)?,))?,
                    other => to_py(py, other, column)?,
                };
                record.set_item(key, item)?;
            }
            records.push(record);
        }
        PyList::new(py, records)
    }
}

/// A connection pool for one SQLite file (WAL, busy timeout, statement cache).
#[pyclass(module = "crewai_rust._native", frozen)]
struct SqlitePool {
    inner: Arc<sqlite::Pool>,
}

#[pymethods]
impl SqlitePool {
    #[new]
    #[pyo3(signature = (path, busy_timeout = 5.0, max_idle = 8))]
    fn new(py: Python<'_>, path: PathBuf, busy_timeout: f64, max_idle: usize) -> PyResult<Self> {
        let timeout = timeout_seconds("busy_timeout", busy_timeout)?;
        guarded(|| {
            py.detach(|| sqlite::Pool::open(path, timeout, max_idle))
                .map(|pool| SqlitePool { inner: Arc::new(pool) })
                .map_err(|err| db_error(py, err))
        })
    }

    /// Check out a connection; it goes back to the pool on `close()`.
    #[pyo3(signature = (busy_timeout = 5.0))]
    fn connect(&self, py: Python<'_>, busy_timeout: f64) -> PyResult<SqliteConnection> {
        let timeout = timeout_seconds("busy_timeout", busy_timeout)?;
        guarded(|| {
            py.detach(|| self.inner.lease(timeout))
                .map(|lease| SqliteConnection { lease: Mutex::new(lease) })
                .map_err(|err| db_error(py, err))
        })
    }

    /// Waits for a background checkpoint in progress, with the GIL released.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// One pooled connection, with `sqlite3`'s transaction behaviour.
#[pyclass(module = "crewai_rust._native", frozen)]
struct SqliteConnection {
    lease: Mutex<sqlite::Lease>,
}

impl SqliteConnection {
    fn with_lease<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut sqlite::Lease) -> sqlite::DbResult<T> + Send,
    ) -> PyResult<T> {
        guarded(|| {
            py.detach(|| {
                let mut lease = crate::locked(&self.lease);
                f(&mut lease)
            })
            .map_err(|err| db_error(py, err))
        })
    }
}

#[pymethods]
impl SqliteConnection {
    /// Run one statement; returns (column names, rows, rowcount, lastrowid).
    #[pyo3(signature = (sql, parameters = None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        parameters: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let values = to_values(py, parameters)?;
        let sql = sql.to_owned();
        let outcome = self.with_lease(py, move |lease| lease.execute(&sql, &values))?;
        let columns = outcome.columns.clone();
        let rows = Bound::new(py, SqliteRows { columns: outcome.columns, rows: outcome.rows })?;
        (columns, rows, outcome.rowcount, outcome.lastrowid).into_pyobject(py)
    }

    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.with_lease(py, |lease| lease.commit())
    }

    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.with_lease(py, |lease| lease.rollback())
    }

    /// Roll back what is uncommitted and return the connection to the pool.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.with_lease(py, |lease| {
            lease.close();
            Ok(())
        })
    }

    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> PyResult<bool> {
        self.with_lease(py, |lease| Ok(lease.in_transaction()))
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        self.with_lease(py, |lease| Ok(lease.is_closed()))
    }
}

#[pyfunction]
fn sqlite_version() -> &'static str {
    sqlite::sqlite_version()
}

#[pyfunction]
fn sqlite_library_address() -> usize {
    sqlite::library_address()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sqlite_version, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite_library_address, m)?)?;
    m.add_class::<SqlitePool>()?;
    m.add_class::<SqliteConnection>()?;
    m.add_class::<SqliteRows>()?;
    Ok(())
}
