//! PyO3 bindings of the memory store (`crewai_rust._native.MemoryStore`).
//!
//! Records cross as flat tuples in LanceDB's row layout with vectors as
//! little-endian f32 bytes; `crewai_rust.memory` builds the `MemoryRecord`s.
//! Every call releases the GIL for the store's work, and the store's lock is
//! never held while Python runs.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::serialization as json;
use crate::memory::{Filter, MemoryError, MemoryStore as Store, RecordData, ScopeMatch};
use super::errors::{db_error, guarded, timeout_seconds};
use crate::database::{DbError, ErrorKind};
use crate::memory::vector::{self, f32_from_le_bytes, f32_le_bytes};

create_exception!(
    _native,
    EmbeddingDimensionError,
    PyValueError,
    "The store holds vectors of another dimension; args are (stored_dim, new_dim)."
);

fn memory_error(py: Python<'_>, err: MemoryError) -> PyErr {
    match err {
        MemoryError::Db(e) => db_error(py, e),
        MemoryError::DimensionMismatch { stored, new } => EmbeddingDimensionError::new_err((stored, new)),
        MemoryError::Invalid(message) => PyValueError::new_err(message),
        MemoryError::Incompatible(message) => db_error(py, DbError { kind: ErrorKind::Database, message }),
    }
}

fn vector_from_bytes(field: &str, bytes: &[u8]) -> PyResult<Vec<f32>> {
    f32_from_le_bytes(bytes).ok_or_else(|| {
        PyValueError::new_err(format!("{field}: {} bytes is not a whole number of float32", bytes.len()))
    })
}

type RecordTuple<'py> = (
    String,
    String,
    String,
    String,
    String,
    f64,
    String,
    i64,
    String,
    String,
    bool,
    Option<Bound<'py, PyBytes>>,
);

fn record_from_tuple(row: RecordTuple<'_>) -> PyResult<RecordData> {
    let vector = match &row.11 {
        Some(bytes) => Some(vector_from_bytes("embedding", bytes.as_bytes())?),
        None => None,
    };
    Ok(RecordData {
        id: row.0,
        content: row.1,
        scope: row.2,
        categories_str: row.3,
        metadata_str: row.4,
        importance: row.5,
        created_at: row.6,
        created_key: row.7,
        last_accessed: row.8,
        source: row.9,
        private: row.10,
        vector,
    })
}

fn record_to_tuple<'py>(py: Python<'py>, r: RecordData) -> PyResult<Bound<'py, PyTuple>> {
    let vector = f32_le_bytes(&r.vector.unwrap_or_default());
    (
        r.id,
        r.content,
        r.scope,
        r.categories_str,
        r.metadata_str,
        r.importance,
        r.created_at,
        r.created_key,
        r.last_accessed,
        r.source,
        r.private,
        PyBytes::new(py, &vector),
    )
        .into_pyobject(py)
}

/// `(kind, a, b, categories, metadata_json, created_before)` → a filter.
type FilterTuple = (String, Option<String>, Option<String>, Vec<String>, Option<String>, Option<i64>);

fn filter_from_tuple(spec: FilterTuple) -> PyResult<Filter> {
    let (kind, a, b, categories, metadata_json, created_before) = spec;
    let need = |v: Option<String>| v.ok_or_else(|| PyValueError::new_err(format!("scope match {kind:?} needs a prefix")));
    let scope = match kind.as_str() {
        "any" => ScopeMatch::Any,
        "prefix" => ScopeMatch::Prefix(need(a)?),
        "prefix_or_root" => ScopeMatch::PrefixOrRoot(need(a)?),
        "range" => ScopeMatch::Range(need(a.clone())?, need(b)?),
        other => return Err(PyValueError::new_err(format!("unknown scope match {other:?}"))),
    };
    let metadata = match metadata_json {
        None => Vec::new(),
        // Its strings come already mapped by crewai_rust.memory (a filter compares
        // Python strings as they are: no surrogate pair joined by a JSON decode).
        Some(text) => match json::parse(&text, &mut json::ValueSink) {
            Ok(json::Value::Object(entries)) => entries,
            _ => return Err(PyValueError::new_err("metadata_filter must be a JSON object")),
        },
    };
    Ok(Filter { scope, categories, metadata, created_before })
}

#[pyclass(module = "crewai_rust._native", frozen)]
pub struct MemoryStore {
    inner: Mutex<Option<Store>>,
    path: String,
    busy_timeout: Duration,
    approximate_from_rows: usize,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Option<Store>> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic interrupted an operation: the mirror may be half
                // updated, so it is rebuilt from the file on the next call.
                let mut guard = poisoned.into_inner();
                if let Some(store) = guard.as_mut() {
                    store.invalidate();
                }
                self.inner.clear_poison();
                guard
            }
        }
    }

    /// Run `f` on the store with the GIL released, reopening it after `close()`
    /// (upstream's `Memory.close()` closes its storage, and tests and callers
    /// still read from it afterwards).
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Store) -> Result<T, MemoryError> + Send) -> PyResult<T> {
        let outcome = guarded(|| {
            Ok(py.detach(|| {
                let mut guard = self.lock();
                if guard.is_none() {
                    *guard = Some(Store::open_with(self.path.clone(), self.busy_timeout, self.approximate_from_rows)?);
                }
                f(guard.as_mut().expect("opened above"))
            }))
        })?;
        outcome.map_err(|e| memory_error(py, e))
    }
}

#[pymethods]
impl MemoryStore {
    #[new]
    #[pyo3(signature = (path, busy_timeout = 30.0, approximate_from_rows = None))]
    fn new(py: Python<'_>, path: String, busy_timeout: f64, approximate_from_rows: Option<usize>) -> PyResult<Self> {
        let timeout = timeout_seconds("busy_timeout", busy_timeout)?;
        let approximate_from_rows = approximate_from_rows.unwrap_or(usize::MAX);
        let opened = guarded(|| Ok(py.detach(|| Store::open_with(path.clone(), timeout, approximate_from_rows))))?;
        let store = opened.map_err(|e| memory_error(py, e))?;
        Ok(MemoryStore { inner: Mutex::new(Some(store)), path, busy_timeout: timeout, approximate_from_rows })
    }

    /// `{"state", "measured_recall", "verified_searches"}` of the approximate index.
    fn index_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let status = self.with(py, |s| Ok(s.index_status()))?;
        let out = PyDict::new(py);
        out.set_item("state", status.state)?;
        out.set_item("measured_recall", status.measured_recall)?;
        out.set_item("verified_searches", status.verified_searches)?;
        Ok(out)
    }

    /// Build the approximate index now if the store is large enough to use it.
    fn build_index(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.build_index())
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn vector_dim(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| {
            s.refresh()?;
            Ok(s.vector_dim())
        })
    }

    fn save(&self, py: Python<'_>, records: Vec<RecordTuple<'_>>) -> PyResult<()> {
        let records = records.into_iter().map(record_from_tuple).collect::<PyResult<Vec<_>>>()?;
        self.with(py, move |s| s.save(records))
    }

    fn update(&self, py: Python<'_>, record: RecordTuple<'_>) -> PyResult<()> {
        let record = record_from_tuple(record)?;
        self.with(py, move |s| s.update(record))
    }

    fn ensure_dim(&self, py: Python<'_>, dim: usize) -> PyResult<()> {
        self.with(py, move |s| s.ensure_dim(dim))
    }

    fn touch(&self, py: Python<'_>, ids: Vec<String>, last_accessed: String) -> PyResult<()> {
        self.with(py, move |s| s.touch(&ids, &last_accessed))
    }

    fn get<'py>(&self, py: Python<'py>, id: String) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let found = self.with(py, move |s| s.get(&id))?;
        found.map(|r| record_to_tuple(py, r)).transpose()
    }

    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| s.count_all())
    }

    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &[u8],
        filter: FilterTuple,
        limit: usize,
        min_score: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        if min_score.is_nan() {
            return Err(PyValueError::new_err("min_score must be a number, got NaN"));
        }
        let query = vector_from_bytes("query_embedding", query)?;
        let filter = filter_from_tuple(filter)?;
        let hits = self.with(py, move |s| s.search(&query, &filter, limit, min_score))?;
        let out = PyList::empty(py);
        for (record, score) in hits {
            out.append((record_to_tuple(py, record)?, score))?;
        }
        Ok(out)
    }

    fn list<'py>(&self, py: Python<'py>, filter: FilterTuple, limit: usize, offset: usize) -> PyResult<Bound<'py, PyList>> {
        let scope = filter_from_tuple(filter)?.scope;
        let records = self.with(py, move |s| s.list(&scope, limit, offset))?;
        let out = PyList::empty(py);
        for record in records {
            out.append(record_to_tuple(py, record)?)?;
        }
        Ok(out)
    }

    fn delete_ids(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<usize> {
        self.with(py, move |s| s.delete_ids(&ids))
    }

    fn delete_matching(&self, py: Python<'_>, filter: FilterTuple) -> PyResult<usize> {
        let filter = filter_from_tuple(filter)?;
        self.with(py, move |s| s.delete_matching(&filter))
    }

    fn reset_all(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.reset_all())
    }

    /// `(record_count, categories, oldest, newest, child_scopes)` of the scopes starting with `prefix`.
    fn scope_summary<'py>(&self, py: Python<'py>, prefix: String, child_prefix: String) -> PyResult<Bound<'py, PyTuple>> {
        let s = self.with(py, move |s| s.scope_summary(&prefix, &child_prefix))?;
        (s.record_count, s.categories, s.oldest, s.newest, s.child_scopes).into_pyobject(py)
    }

    fn child_scopes(&self, py: Python<'_>, prefix: String, exclude: String) -> PyResult<Vec<String>> {
        self.with(py, move |s| s.child_scopes(&prefix, &exclude))
    }

    fn category_counts<'py>(&self, py: Python<'py>, prefix: String) -> PyResult<Bound<'py, PyDict>> {
        let counts = self.with(py, move |s| s.category_counts(&prefix))?;
        let out = PyDict::new(py);
        for (category, n) in counts {
            out.set_item(category, n)?;
        }
        Ok(out)
    }

    /// Close the connection (the file can then be removed); a later call reopens it.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            self.lock().take();
        });
    }

    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }
}

#[pyfunction]
fn batch_dedup_flags(py: Python<'_>, vectors: Vec<Vec<f64>>, threshold: f64) -> PyResult<Vec<bool>> {
    if threshold.is_nan() {
        return Err(PyValueError::new_err("threshold must be a number, got NaN"));
    }
    guarded(|| Ok(py.detach(|| vector::batch_dedup_flags(&vectors, threshold))))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EmbeddingDimensionError", m.py().get_type::<EmbeddingDimensionError>())?;
    m.add_class::<MemoryStore>()?;
    m.add_function(wrap_pyfunction!(batch_dedup_flags, m)?)?;
    Ok(())
}
