//! PyO3 bindings of the memory store (`crewai_rust._native.MemoryStore`).
//!
//! Records cross as typed rows in LanceDB's row layout (`MemoryRow` out; in,
//! any object with its attributes), vectors as little-endian f32 bytes;
//! filters as `MemoryFilter`; `crewai_rust.memory` builds the `MemoryRecord`s.
//! Every call releases the GIL for the store's work, and the store's lock is
//! never held while Python runs.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::intern;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

use crate::serialization as json;
use crate::memory::{Embedding, Filter, MemoryError, MemoryStore as Store, RecordData, ScopeMatch};
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

/// A record as it comes in: any object with `MemoryRow`'s attributes, in
/// practice `crewai_rust.memory.StoredRecord` (the layout's one Python
/// definition) or a `MemoryRow` the store returned. A value's own error (a str
/// with a lone surrogate: `UnicodeEncodeError`) is raised as it is.
fn record_from(obj: &Bound<'_, PyAny>) -> PyResult<RecordData> {
    let py = obj.py();
    let text = |name: &Bound<'_, PyString>| obj.getattr(name)?.extract::<String>();
    let vector = obj.getattr(intern!(py, "vector"))?;
    let vector = if vector.is_none() {
        None
    } else {
        Some(vector_from_bytes("embedding", vector.cast::<PyBytes>()?.as_bytes())?)
    };
    Ok(RecordData {
        id: text(intern!(py, "id"))?,
        content: text(intern!(py, "content"))?,
        scope: text(intern!(py, "scope"))?,
        categories_str: text(intern!(py, "categories_str"))?,
        metadata_str: text(intern!(py, "metadata_str"))?,
        importance: obj.getattr(intern!(py, "importance"))?.extract()?,
        created_at: text(intern!(py, "created_at"))?,
        created_key: obj.getattr(intern!(py, "created_key"))?.extract()?,
        last_accessed: text(intern!(py, "last_accessed"))?,
        source: text(intern!(py, "source"))?,
        private: obj.getattr(intern!(py, "private"))?.extract()?,
        vector: vector.into(),
    })
}

/// `MemoryRow.vector`: the embedding as little-endian float32 bytes
/// (`crewai_rust.memory` builds the `MemoryRecord`).
impl<'py> IntoPyObject<'py> for &Embedding {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &f32_le_bytes(self.as_deref().unwrap_or_default())))
    }
}

#[pymethods]
impl RecordData {
    fn __repr__(&self) -> String {
        format!("MemoryRow(id={:?}, scope={:?}, created_at={:?})", self.id, self.scope, self.created_at)
    }
}

/// Which records a call touches: a scope match (one constructor each), plus
/// categories (any of), metadata (every key equal; a JSON object whose strings
/// `crewai_rust.memory` has already mapped) and `created_key < created_before`.
#[pyclass(module = "crewai_rust._native", frozen)]
pub struct MemoryFilter {
    filter: Filter,
}

impl MemoryFilter {
    fn build(scope: ScopeMatch, categories: Vec<String>, metadata_json: Option<String>, created_before: Option<i64>) -> PyResult<Self> {
        let metadata = match metadata_json {
            None => Vec::new(),
            // Its strings come already mapped by crewai_rust.memory (a filter compares
            // Python strings as they are: no surrogate pair joined by a JSON decode).
            Some(text) => match json::parse(&text, &mut json::ValueSink) {
                Ok(json::Value::Object(entries)) => entries,
                _ => return Err(PyValueError::new_err("metadata_json must be a JSON object")),
            },
        };
        Ok(MemoryFilter { filter: Filter { scope, categories, metadata, created_before } })
    }
}

#[pymethods]
impl MemoryFilter {
    /// Every scope.
    #[staticmethod]
    #[pyo3(signature = (*, categories = Vec::new(), metadata_json = None, created_before = None))]
    fn any(categories: Vec<String>, metadata_json: Option<String>, created_before: Option<i64>) -> PyResult<Self> {
        Self::build(ScopeMatch::Any, categories, metadata_json, created_before)
    }

    /// `scope.startswith(prefix)` (LanceDB's `LIKE 'prefix%'`).
    #[staticmethod]
    #[pyo3(signature = (prefix, *, categories = Vec::new(), metadata_json = None, created_before = None))]
    fn prefix(prefix: String, categories: Vec<String>, metadata_json: Option<String>, created_before: Option<i64>) -> PyResult<Self> {
        Self::build(ScopeMatch::Prefix(prefix), categories, metadata_json, created_before)
    }

    /// A prefix, or the root scope `/` (upstream's scoped delete; `created_before` limits the root only).
    #[staticmethod]
    #[pyo3(signature = (prefix, *, created_before = None))]
    fn prefix_or_root(prefix: String, created_before: Option<i64>) -> PyResult<Self> {
        Self::build(ScopeMatch::PrefixOrRoot(prefix), Vec::new(), None, created_before)
    }

    /// `low <= scope < high` (upstream's scoped reset).
    #[staticmethod]
    fn range(low: String, high: String) -> PyResult<Self> {
        Self::build(ScopeMatch::Range(low, high), Vec::new(), None, None)
    }

    fn __repr__(&self) -> String {
        format!("MemoryFilter({:?})", self.filter)
    }
}

/// What `get_scope_info` needs of the scopes under a prefix.
#[pyclass(module = "crewai_rust._native", frozen, get_all)]
pub struct ScopeSummary {
    record_count: usize,
    categories: Vec<String>,
    oldest: Option<String>,
    newest: Option<String>,
    child_scopes: Vec<String>,
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

    /// `{"state", "source", "measured_recall", "verified_searches"}` of the approximate index.
    fn index_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let status = self.with(py, |s| Ok(s.index_status()))?;
        let out = PyDict::new(py);
        out.set_item("state", status.state)?;
        out.set_item("source", status.source)?;
        out.set_item("measured_recall", status.measured_recall)?;
        out.set_item("verified_searches", status.verified_searches)?;
        Ok(out)
    }

    /// Make the approximate index ready now (loaded from beside the store, or
    /// built and saved there) if the store is large enough to use it.
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

    fn save(&self, py: Python<'_>, records: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        let records = records.iter().map(record_from).collect::<PyResult<Vec<_>>>()?;
        self.with(py, move |s| s.save(records))
    }

    fn update(&self, py: Python<'_>, record: Bound<'_, PyAny>) -> PyResult<()> {
        let record = record_from(&record)?;
        self.with(py, move |s| s.update(record))
    }

    fn ensure_dim(&self, py: Python<'_>, dim: usize) -> PyResult<()> {
        self.with(py, move |s| s.ensure_dim(dim))
    }

    fn touch(&self, py: Python<'_>, ids: Vec<String>, last_accessed: String) -> PyResult<()> {
        self.with(py, move |s| s.touch(&ids, &last_accessed))
    }

    fn get<'py>(&self, py: Python<'py>, id: String) -> PyResult<Option<Bound<'py, RecordData>>> {
        let found = self.with(py, move |s| s.get(&id))?;
        found.map(|r| Bound::new(py, r)).transpose()
    }

    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| s.count_all())
    }

    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &[u8],
        filter: &MemoryFilter,
        limit: usize,
        min_score: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        if min_score.is_nan() {
            return Err(PyValueError::new_err("min_score must be a number, got NaN"));
        }
        let query = vector_from_bytes("query_embedding", query)?;
        let filter = filter.filter.clone();
        let hits = self.with(py, move |s| s.search(&query, &filter, limit, min_score))?;
        let out = PyList::empty(py);
        for (record, score) in hits {
            out.append((Bound::new(py, record)?, score))?;
        }
        Ok(out)
    }

    /// Records whose scope the filter admits (its other criteria do not apply), newest first.
    fn list<'py>(&self, py: Python<'py>, filter: &MemoryFilter, limit: usize, offset: usize) -> PyResult<Bound<'py, PyList>> {
        let scope = filter.filter.scope.clone();
        let records = self.with(py, move |s| s.list(&scope, limit, offset))?;
        let out = PyList::empty(py);
        for record in records {
            out.append(Bound::new(py, record)?)?;
        }
        Ok(out)
    }

    fn delete_ids(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<usize> {
        self.with(py, move |s| s.delete_ids(&ids))
    }

    fn delete_matching(&self, py: Python<'_>, filter: &MemoryFilter) -> PyResult<usize> {
        let filter = filter.filter.clone();
        self.with(py, move |s| s.delete_matching(&filter))
    }

    fn reset_all(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.reset_all())
    }

    /// The scopes starting with `prefix`: record count, categories, oldest and newest `created_at`,
    /// and the child scopes under `child_prefix`.
    fn scope_summary(&self, py: Python<'_>, prefix: String, child_prefix: String) -> PyResult<ScopeSummary> {
        let s = self.with(py, move |s| s.scope_summary(&prefix, &child_prefix))?;
        Ok(ScopeSummary {
            record_count: s.record_count,
            categories: s.categories,
            oldest: s.oldest,
            newest: s.newest,
            child_scopes: s.child_scopes,
        })
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
    m.add_class::<RecordData>()?;
    m.add_class::<MemoryFilter>()?;
    m.add_class::<ScopeSummary>()?;
    m.add_function(wrap_pyfunction!(batch_dedup_flags, m)?)?;
    Ok(())
}
