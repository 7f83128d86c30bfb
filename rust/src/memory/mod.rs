//! The memory store behind `crewai_rust.memory.RustMemoryStorage`.
//!
//! SQLite is the durable copy and the meeting point of processes; each store
//! keeps a full mirror of it in memory (rows, a contiguous f32 matrix, and
//! per-scope statistics), so search is a scan of that matrix and the scope
//! queries cost O(scopes), not O(rows). Every write runs in an IMMEDIATE
//! transaction and stamps the rows it touches with a sequence number; a store
//! that notices another connection's commit (`PRAGMA data_version`) reads
//! just the rows and deletions stamped after the last sequence it has seen.
//!
//! The semantics (scores, prefix matching, the dimension rules) are those of
//! upstream's `LanceDBStorage`; the Python wrapper documents them.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
#[cfg(feature = "python")]
use pyo3::pyclass;

pub mod ann;
mod filter;
mod index_file;
mod mirror;
mod search;
pub mod vector;

pub use filter::{python_eq, Filter, ScopeMatch};
pub use mirror::{IndexStatus, ScopeSummary};
use mirror::{Mirror, Row, ScopeStats};
use search::{nearest_exact, nearest_two_pass, HALF_PASS_MIN_FLOATS, PARALLEL_MIN_FLOATS, SCAN_THREADS};

use ann::AnnIndex;
use crate::locked;
use crate::serialization::{self as json, Value};
use crate::database::{enter_wal_mode, DbError};
use vector::{f32_from_le_bytes, f32_le_bytes, half_squared_l2_kernel, squared_l2, to_half};

/// LanceDB's default when a store's dimension is not known yet and a batch
/// carries no embedding (`lancedb_storage.DEFAULT_VECTOR_DIM`).
pub const DEFAULT_VECTOR_DIM: usize = 3072;

const SCHEMA_VERSION: i64 = 1;

/// Up to here exact search costs a few milliseconds at most, less than
/// building the index (seconds of both cores per process) would repay.
pub const DEFAULT_APPROXIMATE_FROM_ROWS: usize = 50_000;

/// Deletions kept for incremental refresh; a store further behind reloads fully.
const DELETIONS_KEPT: i64 = 20_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    scope TEXT NOT NULL,
    categories_str TEXT NOT NULL,
    metadata_str TEXT NOT NULL,
    importance REAL NOT NULL,
    created_at TEXT NOT NULL,
    created_key INTEGER NOT NULL,
    last_accessed TEXT NOT NULL,
    source TEXT NOT NULL,
    private INTEGER NOT NULL,
    vector BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_seq ON memories (seq);
CREATE TABLE IF NOT EXISTS deletions (seq INTEGER PRIMARY KEY, id TEXT NOT NULL);
";

#[derive(Debug)]
pub enum MemoryError {
    Db(DbError),
    /// `EmbeddingDimensionMismatchError(stored, new)` in Python.
    DimensionMismatch { stored: usize, new: usize },
    /// A `ValueError`; the message names the field.
    Invalid(String),
    /// The store's file holds something this version cannot read.
    Incompatible(String),
}

impl std::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryError::Db(e) => write!(f, "{e}"),
            MemoryError::DimensionMismatch { stored, new } => {
                write!(f, "embedding dimension mismatch: store has {stored}, got {new}")
            }
            MemoryError::Invalid(m) | MemoryError::Incompatible(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for MemoryError {
    fn from(e: rusqlite::Error) -> Self {
        MemoryError::Db(e.into())
    }
}

pub type MemoryResult<T> = Result<T, MemoryError>;

/// One record in upstream's LanceDB row layout: the layout's one Rust
/// definition. Python sees it as `_native.MemoryRow` (read-only attributes;
/// `vector` as little-endian float32 bytes, see `python::memory`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "python", pyclass(name = "MemoryRow", module = "crewai_rust._native", frozen, get_all, skip_from_py_object))]
pub struct RecordData {
    pub id: String,
    pub content: String,
    pub scope: String,
    /// `json.dumps(record.categories)`, kept verbatim.
    pub categories_str: String,
    /// `json.dumps(record.metadata)`, kept verbatim.
    pub metadata_str: String,
    pub importance: f64,
    /// `created_at.isoformat()`.
    pub created_at: String,
    /// `created_at` in microseconds, for ordering and `older_than`.
    pub created_key: i64,
    pub last_accessed: String,
    /// `record.source or ""`.
    pub source: String,
    pub private: bool,
    /// None: no embedding (stored as zeros of the store's dimension, as LanceDB does).
    pub vector: Embedding,
}

/// A record's embedding. Python reads it as little-endian float32 bytes
/// (`python::memory` converts), the form the store keeps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedding(pub Option<Vec<f32>>);

impl From<Option<Vec<f32>>> for Embedding {
    fn from(vector: Option<Vec<f32>>) -> Self {
        Embedding(vector)
    }
}

impl std::ops::Deref for Embedding {
    type Target = Option<Vec<f32>>;
    fn deref(&self) -> &Option<Vec<f32>> {
        &self.0
    }
}

impl std::ops::DerefMut for Embedding {
    fn deref_mut(&mut self) -> &mut Option<Vec<f32>> {
        &mut self.0
    }
}

/// Stored categories and metadata, strings in [`json::parse_lossless`]'s form:
/// a lone surrogate (which Python strings, and so `json.dumps`, allow) must not
/// make a record's categories or metadata unreadable, and so invisible to
/// filters and counters.
fn parse_json(text: &str) -> Option<Value> {
    json::parse_lossless(text, &mut json::ValueSink).ok()
}

fn parse_categories(text: &str) -> Vec<String> {
    match parse_json(text) {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| if let Value::Str(s) = v { Some(s) } else { None })
            .collect(),
        _ => Vec::new(),
    }
}

/// A change to the mirror, applied once its transaction has committed.
type Apply = Box<dyn FnOnce(&mut Mirror)>;

pub struct MemoryStore {
    path: PathBuf,
    conn: Connection,
    /// After `conn` (see BackgroundCheckpoints). A 10 MB record used to pay
    /// SQLite's inline auto-checkpoint (copy the WAL, fsync) in its own commit.
    _checkpoints: crate::database::BackgroundCheckpoints,
    mirror: Mirror,
    /// The dimension for records without embeddings when the store has none
    /// (LanceDBStorage keeps its last `_vector_dim` across a full reset).
    fallback_dim: usize,
    /// From this many rows on, unfiltered searches go through the approximate index.
    approximate_from_rows: usize,
    /// Where the approximate index is saved for later processes (None: in-memory database).
    index_dir: Option<PathBuf>,
}

fn meta(tx: &Connection, key: &str) -> rusqlite::Result<i64> {
    Ok(tx
        .query_row("SELECT value FROM store_meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn set_meta(tx: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO store_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

const SELECT_ROW: &str = "SELECT id, content, scope, categories_str, metadata_str, importance, created_at, \
    created_key, last_accessed, source, private, vector, seq FROM memories";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(RecordData, i64)> {
    let blob: Vec<u8> = r.get(11)?;
    Ok((
        RecordData {
            id: r.get(0)?,
            content: r.get(1)?,
            scope: r.get(2)?,
            categories_str: r.get(3)?,
            metadata_str: r.get(4)?,
            importance: r.get(5)?,
            created_at: r.get(6)?,
            created_key: r.get(7)?,
            last_accessed: r.get(8)?,
            source: r.get(9)?,
            private: r.get::<_, i64>(10)? != 0,
            // A torn blob reads as empty, which `apply_row` reports as a dimension mismatch.
            vector: Some(f32_from_le_bytes(&blob).unwrap_or_default()).into(),
        },
        r.get(12)?,
    ))
}

/// The largest dimension a store accepts (4 MiB per vector): a store without
/// one fills records that have no embedding with zeros of its dimension, so an
/// absurd `vector_dim` would otherwise exhaust memory at the first such save.
pub const MAX_VECTOR_DIM: usize = 1 << 20;

pub fn check_vector(field: &str, vector: &[f32]) -> MemoryResult<()> {
    if vector.is_empty() {
        return Err(MemoryError::Invalid(format!("{field} must not be empty")));
    }
    if vector.len() > MAX_VECTOR_DIM {
        return Err(MemoryError::Invalid(format!(
            "{field} has {} dimensions; at most {MAX_VECTOR_DIM} are supported",
            vector.len()
        )));
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(MemoryError::Invalid(format!(
            "{field} must contain finite numbers only; element {i} is {}",
            vector[i]
        )));
    }
    Ok(())
}

/// Before anything is written (the WAL switch, the schema): a file that is not
/// a database fails here (reading its header), and a database that is not a
/// memory store is refused, left byte for byte as it was.
fn refuse_foreign_database(conn: &Connection, path: &Path) -> MemoryResult<()> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let tables: Vec<String> = stmt.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    if tables.is_empty() || tables.iter().any(|name| name == "store_meta") {
        return Ok(());
    }
    Err(MemoryError::Incompatible(format!(
        "{} is not a crewai memory store (it holds the tables {}); it was left unchanged",
        path.display(),
        tables.join(", ")
    )))
}

impl MemoryStore {
    /// Open (creating if needed) the store file at `path`.
    pub fn open(path: impl Into<PathBuf>, busy_timeout: Duration) -> MemoryResult<MemoryStore> {
        Self::open_with(path, busy_timeout, DEFAULT_APPROXIMATE_FROM_ROWS)
    }

    /// `approximate_from_rows`: the store size from which unfiltered searches
    /// use the approximate index (`usize::MAX`: always exact).
    pub fn open_with(path: impl Into<PathBuf>, busy_timeout: Duration, approximate_from_rows: usize) -> MemoryResult<MemoryStore> {
        let path = path.into();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)?;
        crate::database::set_busy_timeout(&conn, busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(32);
        refuse_foreign_database(&conn, &path)?;
        enter_wal_mode(&conn, busy_timeout)?;
        // WAL + NORMAL: a commit survives a process crash (SIGKILL included);
        // only an OS crash or power loss may drop the last transactions.
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        let checkpoints = crate::database::BackgroundCheckpoints::install(&conn, &path);
        let mut store = MemoryStore { path, conn, _checkpoints: checkpoints, mirror: Mirror::default(), fallback_dim: 0, approximate_from_rows, index_dir: None };
        store.index_dir = index_file::index_dir(&store.path);
        {
            let tx = store.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            let version = meta(&tx, "schema_version")?;
            if version == 0 {
                set_meta(&tx, "schema_version", SCHEMA_VERSION)?;
            } else if version > SCHEMA_VERSION {
                return Err(MemoryError::Incompatible(format!(
                    "{} was written by a newer crewai_rust (memory schema {version}; this version reads up to {SCHEMA_VERSION})",
                    store.path.display()
                )));
            }
            tx.commit()?;
        }
        store.mirror.data_version = -1;
        store.refresh()?;
        store.fallback_dim = store.mirror.dim;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forget the mirror: the next call rebuilds it from the file.
    pub fn invalidate(&mut self) {
        self.mirror.clear();
        self.mirror.data_version = -1;
        self.mirror.epoch = -1;
    }

    fn data_version(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// Bring the mirror up to date with commits of other connections.
    pub fn refresh(&mut self) -> MemoryResult<()> {
        if self.data_version()? == self.mirror.data_version {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        Self::sync(&tx, &mut self.mirror)?;
        tx.commit()?;
        Ok(())
    }

    /// Inside `tx`: apply what other connections committed since the mirror's
    /// data_version. A failure leaves the mirror marked stale.
    fn sync(tx: &Transaction<'_>, mirror: &mut Mirror) -> MemoryResult<()> {
        let version = tx.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))?;
        if version != mirror.data_version {
            if let Err(e) = Self::catch_up(tx, mirror) {
                mirror.data_version = -1;
                return Err(e);
            }
            mirror.data_version = version;
        }
        Ok(())
    }

    fn catch_up(tx: &Transaction<'_>, mirror: &mut Mirror) -> MemoryResult<()> {
        let (epoch, seq) = (meta(tx, "epoch")?, meta(tx, "seq")?);
        let floor = meta(tx, "deletions_floor")?;
        let dim = meta(tx, "vector_dim")? as usize;
        if epoch != mirror.epoch || mirror.seq < floor || dim != mirror.dim {
            mirror.clear();
            mirror.dim = dim;
            mirror.epoch = epoch;
            let mut stmt = tx.prepare(SELECT_ROW)?;
            let rows = stmt.query_map([], read_row)?;
            for row in rows {
                let (data, row_seq) = row?;
                Self::apply_row(mirror, data, row_seq)?;
            }
        } else if seq != mirror.seq {
            // Deletions first: a row deleted and written again is kept.
            let mut stmt = tx.prepare_cached("SELECT id FROM deletions WHERE seq > ?1 ORDER BY seq")?;
            let ids = stmt.query_map([mirror.seq], |r| r.get::<_, String>(0))?;
            for id in ids {
                mirror.remove(&id?);
            }
            let mut stmt = tx.prepare_cached(&format!("{SELECT_ROW} WHERE seq > ?1 ORDER BY seq"))?;
            let rows = stmt.query_map([mirror.seq], read_row)?;
            for row in rows {
                let (data, row_seq) = row?;
                Self::apply_row(mirror, data, row_seq)?;
            }
        }
        mirror.seq = seq;
        Ok(())
    }

    fn apply_row(mirror: &mut Mirror, mut data: RecordData, seq: i64) -> MemoryResult<()> {
        let vector = data.vector.take().unwrap_or_default();
        if vector.len() != mirror.dim {
            return Err(MemoryError::Incompatible(format!(
                "record {:?} holds a {}-dimensional vector in a {}-dimensional store",
                data.id,
                vector.len(),
                mirror.dim
            )));
        }
        mirror.upsert(Row::new(data, seq), &vector);
        Ok(())
    }

    /// Run `work` in an IMMEDIATE transaction over the mirror brought up to
    /// date inside it (callers need no `refresh` first). The
    /// mirror is only changed through the returned closure, after the commit,
    /// so a failed commit leaves it matching the file.
    fn write<T>(
        &mut self,
        work: impl FnOnce(&Transaction<'_>, &Mirror, &mut i64) -> MemoryResult<(T, Apply)>,
    ) -> MemoryResult<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::sync(&tx, &mut self.mirror)?;
        let mut seq = self.mirror.seq;
        let start_seq = seq;
        let (result, apply) = work(&tx, &self.mirror, &mut seq)?;
        if seq != start_seq {
            set_meta(&tx, "seq", seq)?;
            if seq / 1000 != start_seq / 1000 {
                let floor = seq - DELETIONS_KEPT;
                if floor > 0 {
                    tx.prepare_cached("DELETE FROM deletions WHERE seq <= ?1")?.execute([floor])?;
                    set_meta(&tx, "deletions_floor", floor)?;
                }
            }
        }
        if let Err(e) = tx.commit() {
            self.mirror.data_version = -1;
            return Err(e.into());
        }
        apply(&mut self.mirror);
        self.mirror.seq = seq;
        Ok(result)
    }

    /// Make the approximate index ready now if the store is large enough to
    /// use it (a search starts this in the background otherwise): the index
    /// saved beside the store when there is no index yet and it still covers
    /// the rows, else a new build, saved there. Returns whether it did.
    pub fn build_index(&mut self) -> MemoryResult<bool> {
        self.refresh()?;
        if self.mirror.rows.is_empty() || self.mirror.rows.len() < self.approximate_from_rows || self.mirror.ann.disabled {
            return Ok(false);
        }
        self.mirror.build_index_now(self.index_dir.as_deref());
        Ok(true)
    }

    pub fn index_status(&mut self) -> IndexStatus {
        let m = &mut self.mirror;
        m.poll_index();
        let state = if m.ann.disabled {
            "disabled"
        } else if m.ann.index.is_some() {
            "ready"
        } else if m.ann.inbox.building.load(AtomicOrdering::Acquire) {
            "building"
        } else {
            "off"
        };
        let source = (state == "ready").then_some(if m.ann.loaded { "loaded" } else { "built" });
        IndexStatus { state, source, measured_recall: m.ann.recall(), verified_searches: m.ann.verified }
    }

    pub fn vector_dim(&self) -> usize {
        self.mirror.dim
    }

    /// Upstream's `save`: the batch's dimension is its first embedding's, every
    /// embedding must match it and the store's; records without one get zeros.
    pub fn save(&mut self, records: Vec<RecordData>) -> MemoryResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch_dim: Option<usize> = None;
        for r in &records {
            if let Some(v) = &*r.vector {
                check_vector("embedding", v)?;
                match batch_dim {
                    None => batch_dim = Some(v.len()),
                    Some(d) if d != v.len() => {
                        return Err(MemoryError::DimensionMismatch { stored: d, new: v.len() })
                    }
                    _ => {}
                }
            }
        }
        self.upsert_records(records, batch_dim)
    }

    /// Upstream's `update`: replaces the record with the same id (or adds it).
    pub fn update(&mut self, record: RecordData) -> MemoryResult<()> {
        if let Some(v) = &*record.vector {
            check_vector("embedding", v)?;
        }
        let dim = record.vector.as_ref().map(Vec::len);
        self.upsert_records(vec![record], dim)
    }

    fn upsert_records(&mut self, records: Vec<RecordData>, batch_dim: Option<usize>) -> MemoryResult<()> {
        let fallback = self.fallback_dim;
        let dim = self.write(|tx, mirror, seq| {
            let dim = if mirror.dim != 0 {
                if let Some(d) = batch_dim.filter(|d| *d != mirror.dim) {
                    return Err(MemoryError::DimensionMismatch { stored: mirror.dim, new: d });
                }
                mirror.dim
            } else {
                let dim = batch_dim.unwrap_or_else(|| dim_for_new_store(fallback));
                set_meta(tx, "vector_dim", dim as i64)?;
                dim
            };
            let staged = insert_rows(tx, records, dim, seq)?;
            let apply = apply_rows((mirror.dim == 0).then_some(dim), staged);
            Ok((dim, apply))
        })?;
        self.fallback_dim = dim;
        Ok(())
    }

    /// Set `last_accessed` of the given records (those that exist).
    pub fn touch(&mut self, ids: &[String], last_accessed: &str) -> MemoryResult<()> {
        self.refresh()?;
        if ids.iter().all(|id| !self.mirror.slot_of.contains_key(id)) {
            return Ok(());
        }
        self.write(|tx, mirror, seq| {
            let mut update = tx.prepare_cached("UPDATE memories SET last_accessed = ?1, seq = ?2 WHERE id = ?3")?;
            let mut touched = Vec::new();
            for id in ids {
                if let Some(&slot) = mirror.slot_of.get(id) {
                    *seq += 1;
                    update.execute(params![last_accessed, *seq, id])?;
                    touched.push((slot, *seq));
                }
            }
            let stamp = last_accessed.to_string();
            let apply = move |m: &mut Mirror| {
                for (slot, s) in touched {
                    m.rows[slot].data.last_accessed = stamp.clone();
                    m.rows[slot].seq = s;
                }
            };
            Ok(((), Box::new(apply) as Apply))
        })
    }

    fn delete_where(&mut self, select: impl Fn(&Mirror) -> Vec<String>) -> MemoryResult<usize> {
        self.refresh()?;
        if select(&self.mirror).is_empty() {
            return Ok(0);
        }
        self.write(|tx, mirror, seq| {
            let ids = select(mirror);
            let mut delete = tx.prepare_cached("DELETE FROM memories WHERE id = ?1")?;
            let mut log = tx.prepare_cached("INSERT INTO deletions (seq, id) VALUES (?1, ?2)")?;
            for id in &ids {
                *seq += 1;
                delete.execute([id])?;
                log.execute(params![*seq, id])?;
            }
            let count = ids.len();
            let apply = move |m: &mut Mirror| {
                for id in ids {
                    m.remove(&id);
                }
            };
            Ok((count, Box::new(apply) as Apply))
        })
    }

    /// Delete the records with these ids; returns how many existed.
    pub fn delete_ids(&mut self, ids: &[String]) -> MemoryResult<usize> {
        self.delete_where(|m| {
            let mut seen = std::collections::HashSet::new();
            ids.iter().filter(|id| m.slot_of.contains_key(*id) && seen.insert(*id)).cloned().collect()
        })
    }

    /// Delete the records the filter admits; returns how many.
    pub fn delete_matching(&mut self, filter: &Filter) -> MemoryResult<usize> {
        self.delete_where(|m| m.rows.iter().filter(|r| filter.admits(r)).map(|r| r.data.id.clone()).collect())
    }

    /// Drop every record; the next save may set a new dimension.
    pub fn reset_all(&mut self) -> MemoryResult<()> {
        self.write(|tx, mirror, _seq| {
            tx.execute("DELETE FROM memories", [])?;
            tx.execute("DELETE FROM deletions", [])?;
            let epoch = mirror.epoch + 1;
            set_meta(tx, "epoch", epoch)?;
            set_meta(tx, "vector_dim", 0)?;
            let apply = move |m: &mut Mirror| {
                m.clear();
                m.epoch = epoch;
            };
            Ok(((), Box::new(apply) as Apply))
        })?;
        // The mirror's seq is restored by `write`; the file's stays (it only grows).
        if let Some(dir) = &self.index_dir {
            index_file::remove(dir);
        }
        Ok(())
    }

    pub fn get(&mut self, id: &str) -> MemoryResult<Option<RecordData>> {
        self.refresh()?;
        Ok(self.mirror.slot_of.get(id).map(|&slot| self.record_at(slot)))
    }

    fn record_at(&self, slot: usize) -> RecordData {
        let mut data = self.mirror.rows[slot].data.clone();
        data.vector = Some(self.mirror.vector(slot).to_vec()).into();
        data
    }

    pub fn count_all(&mut self) -> MemoryResult<usize> {
        self.refresh()?;
        Ok(self.mirror.rows.len())
    }

    /// The `limit` nearest records the filter admits, nearest first, with
    /// LanceDB's score `1 / (1 + squared L2)` and at least `min_score`.
    pub fn search(&mut self, query: &[f32], filter: &Filter, limit: usize, min_score: f64) -> MemoryResult<Vec<(RecordData, f64)>> {
        check_vector("query_embedding", query)?;
        self.refresh()?;
        if self.mirror.dim == 0 {
            return Ok(Vec::new()); // no table yet: LanceDBStorage answers [] before any check
        }
        if query.len() != self.mirror.dim {
            return Err(MemoryError::DimensionMismatch { stored: self.mirror.dim, new: query.len() });
        }
        let unfiltered = filter == &Filter::scope(ScopeMatch::Any);
        let approximate = if limit > 0 && unfiltered && self.mirror.rows.len() >= self.approximate_from_rows
        {
            self.mirror.approximate_slots(query, limit.min(self.mirror.rows.len()), self.index_dir.as_deref())
        } else {
            None
        };
        let verify = approximate.is_some() && self.mirror.ann.verification_due();
        let mut verdict = None;
        let m = &self.mirror;
        let keep = limit.min(m.rows.len());
        if keep == 0 {
            return Ok(Vec::new());
        }
        // Categories numbered below 64 are tested by mask; a category no row
        // has matches nothing; only the rest compare strings.
        let (mut mask, mut by_name) = (0u64, Vec::new());
        for category in &filter.categories {
            match m.category_numbers.get(category) {
                Some(&number) if number < 64 => mask |= 1 << number,
                Some(_) => by_name.push(category),
                None => {}
            }
        }
        let any_category = filter.categories.is_empty();
        let admitted = |slot: usize| {
            let row = &m.rows[slot];
            unfiltered
                || ((any_category || row.category_mask & mask != 0 || by_name.iter().any(|c| row.categories.contains(c)))
                    && filter.admits_besides_categories(row))
        };
        let exact = || match half_squared_l2_kernel().filter(|_| m.rows.len() * m.dim >= HALF_PASS_MIN_FLOATS) {
            Some(kernel) => {
                // The scan is bound by memory bandwidth, which a second core
                // adds to; below this size a thread costs more than it saves.
                let parts = if m.rows.len() * m.dim >= PARALLEL_MIN_FLOATS { SCAN_THREADS } else { 1 };
                nearest_two_pass(m, query, keep, admitted, kernel, parts)
            }
            None => nearest_exact(m, query, keep, (0..m.rows.len()).filter(|&s| admitted(s))),
        };
        let nearest = match approximate {
            None => exact(),
            Some(slots) => {
                let found = nearest_exact(m, query, keep, slots.into_iter());
                if !verify {
                    found
                } else {
                    // Measure the index against exact search on live queries;
                    // the exact answer is the one returned.
                    let truth = exact();
                    verdict = Some((found.iter().filter(|c| truth.iter().any(|t| t.slot == c.slot)).count(), truth.len()));
                    truth
                }
            }
        };
        if let Some((found, wanted)) = verdict {
            self.mirror.ann.record_verification(found, wanted);
        }
        Ok(nearest
            .into_iter()
            .map(|c| (c, 1.0 / (1.0 + c.distance as f64)))
            .filter(|(_, score)| *score >= min_score)
            .map(|(c, score)| (self.record_at(c.slot), score))
            .collect())
    }

    /// The records a scope filter admits, newest `created_at` first, paged.
    pub fn list(&mut self, scope: &ScopeMatch, limit: usize, offset: usize) -> MemoryResult<Vec<RecordData>> {
        self.refresh()?;
        let m = &self.mirror;
        let mut slots: Vec<usize> = (0..m.rows.len()).filter(|&s| scope.admits(&m.rows[s].data.scope)).collect();
        let newest_first = |a: &usize, b: &usize| {
            let (ra, rb) = (&m.rows[*a], &m.rows[*b]);
            rb.data.created_key.cmp(&ra.data.created_key).then(rb.seq.cmp(&ra.seq))
        };
        let end = offset.saturating_add(limit).min(slots.len());
        if offset >= end {
            return Ok(Vec::new());
        }
        if end < slots.len() {
            slots.select_nth_unstable_by(end, newest_first);
            slots.truncate(end);
        }
        slots.sort_unstable_by(newest_first);
        Ok(slots[offset..end].iter().map(|&s| self.record_at(s)).collect())
    }

    fn scopes_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a ScopeStats)> + 'a {
        self.mirror
            .scopes
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(scope, _)| scope.starts_with(prefix))
    }

    /// Upstream's `get_scope_info` over the records whose scope starts with
    /// `prefix`; children are the first components below `child_prefix`.
    pub fn scope_summary(&mut self, prefix: &str, child_prefix: &str) -> MemoryResult<ScopeSummary> {
        self.refresh()?;
        let mut summary = ScopeSummary { record_count: 0, categories: Vec::new(), oldest: None, newest: None, child_scopes: Vec::new() };
        let mut categories = std::collections::BTreeSet::new();
        let mut children = std::collections::BTreeSet::new();
        let mut oldest: Option<&(i64, String)> = None;
        let mut newest: Option<&(i64, String)> = None;
        for (scope, stats) in self.scopes_with_prefix(prefix) {
            summary.record_count += stats.count;
            categories.extend(stats.categories.keys().cloned());
            if let Some(first) = stats.created.keys().next() {
                if oldest.map_or(true, |o| first.0 < o.0) {
                    oldest = Some(first);
                }
            }
            if let Some(last) = stats.created.keys().next_back() {
                if newest.map_or(true, |n| last.0 > n.0) {
                    newest = Some(last);
                }
            }
            if let Some(rest) = scope.strip_prefix(child_prefix) {
                let first = rest.split('/').next().unwrap_or("");
                if !first.is_empty() {
                    children.insert(format!("{child_prefix}{first}"));
                }
            }
        }
        summary.categories = categories.into_iter().collect();
        summary.oldest = oldest.map(|o| o.1.clone());
        summary.newest = newest.map(|n| n.1.clone());
        summary.child_scopes = children.into_iter().collect();
        Ok(summary)
    }

    /// Upstream's `list_scopes`: first components below `prefix`, the scope
    /// equal to `exclude` left out.
    pub fn child_scopes(&mut self, prefix: &str, exclude: &str) -> MemoryResult<Vec<String>> {
        self.refresh()?;
        let mut children = std::collections::BTreeSet::new();
        for (scope, _) in self.scopes_with_prefix(prefix) {
            if scope == exclude {
                continue;
            }
            let first = scope[prefix.len()..].split('/').next().unwrap_or("");
            if !first.is_empty() {
                children.insert(format!("{prefix}{first}"));
            }
        }
        Ok(children.into_iter().collect())
    }

    /// Category occurrences over the scopes starting with `prefix`, in first-seen order of scopes.
    pub fn category_counts(&mut self, prefix: &str) -> MemoryResult<Vec<(String, usize)>> {
        self.refresh()?;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, stats) in self.scopes_with_prefix(prefix) {
            for (c, n) in &stats.categories {
                *counts.entry(c.clone()).or_default() += n;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Fix the dimension of a store that has none yet (LanceDBStorage's `vector_dim=`).
    pub fn ensure_dim(&mut self, dim: usize) -> MemoryResult<()> {
        if dim == 0 || dim > MAX_VECTOR_DIM {
            return Err(MemoryError::Invalid(format!(
                "vector_dim must be a positive integer up to {MAX_VECTOR_DIM}, got {dim}"
            )));
        }
        self.refresh()?;
        if self.mirror.dim != 0 {
            return Ok(());
        }
        self.write(|tx, mirror, _seq| {
            let dim = if mirror.dim != 0 { mirror.dim } else { dim };
            set_meta(tx, "vector_dim", dim as i64)?;
            let apply = move |m: &mut Mirror| m.dim = dim;
            Ok(((), Box::new(apply) as Apply))
        })?;
        self.fallback_dim = self.mirror.dim;
        Ok(())
    }
}

const INSERT_ROW: &str = "INSERT OR REPLACE INTO memories (id, content, scope, categories_str, metadata_str, \
    importance, created_at, created_key, last_accessed, source, private, vector, seq) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// The dimension a store without one takes for records without embeddings:
/// the last one it had (as LanceDBStorage keeps `_vector_dim`), else LanceDB's default.
fn dim_for_new_store(fallback: usize) -> usize {
    if fallback != 0 {
        fallback
    } else {
        DEFAULT_VECTOR_DIM
    }
}

/// Write `records` (zeros for a missing embedding), each stamped with the next
/// sequence number; returns them as mirror rows for [`apply_rows`].
fn insert_rows(tx: &Transaction<'_>, records: Vec<RecordData>, dim: usize, seq: &mut i64) -> rusqlite::Result<Vec<(Row, Vec<f32>)>> {
    let mut insert = tx.prepare_cached(INSERT_ROW)?;
    let mut staged = Vec::with_capacity(records.len());
    for mut r in records {
        *seq += 1;
        let vector = r.vector.take().unwrap_or_else(|| vec![0f32; dim]);
        insert_row(&mut insert, &r, &vector, *seq)?;
        staged.push((Row::new(r, *seq), vector));
    }
    Ok(staged)
}

/// The mirror's side of [`insert_rows`], setting its dimension first when the write set it.
fn apply_rows(new_dim: Option<usize>, staged: Vec<(Row, Vec<f32>)>) -> Apply {
    Box::new(move |m: &mut Mirror| {
        if let Some(dim) = new_dim {
            m.dim = dim;
        }
        for (row, vector) in staged {
            m.upsert(row, &vector);
        }
    })
}

fn insert_row(stmt: &mut rusqlite::CachedStatement<'_>, r: &RecordData, vector: &[f32], seq: i64) -> rusqlite::Result<()> {
    stmt.execute(params![
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
        r.private as i64,
        f32_le_bytes(vector),
        seq
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mirror::*;
    use super::search::*;
    use super::*;
    use crate::test_support::at_once;

    fn record(id: &str, scope: &str, categories: &[&str], created_key: i64, vector: Option<Vec<f32>>) -> RecordData {
        let cats: Vec<String> = categories.iter().map(|c| format!("\"{c}\"")).collect();
        RecordData {
            id: id.into(),
            content: format!("content of {id}"),
            scope: scope.into(),
            categories_str: format!("[{}]", cats.join(", ")),
            metadata_str: format!("{{\"n\": {created_key}}}"),
            importance: 0.5,
            created_at: format!("2026-01-01T00:00:{:02}", created_key),
            created_key,
            last_accessed: "2026-01-01T00:00:00".into(),
            source: String::new(),
            private: false,
            vector: vector.into(),
        }
    }

    fn open(dir: &tempdir::Dir) -> MemoryStore {
        MemoryStore::open(dir.path().join("m.sqlite3"), Duration::from_secs(5)).unwrap()
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new(name: &str) -> Dir {
                let p = std::env::temp_dir().join(format!("crewai-rust-memory-{name}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_database_that_is_not_a_memory_store_is_refused_and_left_unchanged() {
        let dir = tempdir::Dir::new("foreign");
        let path = dir.path().join("other.sqlite3");
        {
            let other = Connection::open(&path).unwrap();
            other.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);").unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = MemoryStore::open(&path, Duration::from_secs(1)).err().expect("refused");
        assert!(err.to_string().contains("is not a crewai memory store (it holds the tables invoices)"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("other.sqlite3-wal").exists());
    }

    #[test]
    fn search_ranks_by_squared_l2_with_lancedb_scores() {
        let dir = tempdir::Dir::new("rank");
        let mut s = open(&dir);
        s.save(vec![
            record("a", "/x", &[], 1, Some(vec![1.0, 0.0])),
            record("b", "/x", &[], 2, Some(vec![0.0, 3.0])),
            record("c", "/y", &[], 3, Some(vec![0.5, 0.5])),
        ])
        .unwrap();
        let hits = s.search(&[1.0, 1.0], &Filter::scope(ScopeMatch::Any), 10, 0.0).unwrap();
        let got: Vec<(&str, f64)> = hits.iter().map(|(r, score)| (r.id.as_str(), *score)).collect();
        assert_eq!(got, vec![("c", 1.0 / 1.5), ("a", 0.5), ("b", 1.0 / 6.0)]);
        let scoped = s.search(&[1.0, 1.0], &Filter::scope(ScopeMatch::Prefix("/x".into())), 1, 0.0).unwrap();
        assert_eq!(scoped[0].0.id, "a");
        let strict = s.search(&[1.0, 1.0], &Filter::scope(ScopeMatch::Any), 10, 0.4).unwrap();
        assert_eq!(strict.len(), 2);
    }

    #[test]
    fn dimension_rules_follow_upstream() {
        let dir = tempdir::Dir::new("dims");
        let mut s = open(&dir);
        let mixed = s.save(vec![record("a", "/", &[], 1, Some(vec![1.0; 4])), record("b", "/", &[], 1, Some(vec![1.0; 5]))]);
        assert!(matches!(mixed, Err(MemoryError::DimensionMismatch { stored: 4, new: 5 })));
        s.save(vec![record("a", "/", &[], 1, Some(vec![1.0; 4]))]).unwrap();
        let wrong = s.save(vec![record("b", "/", &[], 1, Some(vec![1.0; 8]))]);
        assert!(matches!(wrong, Err(MemoryError::DimensionMismatch { stored: 4, new: 8 })));
        s.save(vec![record("c", "/", &[], 1, None)]).unwrap();
        assert_eq!(*s.get("c").unwrap().unwrap().vector, Some(vec![0.0; 4]));
        s.reset_all().unwrap();
        s.save(vec![record("d", "/", &[], 1, Some(vec![1.0; 8]))]).unwrap();
        assert_eq!(s.vector_dim(), 8);
        assert!(matches!(s.save(vec![record("e", "/", &[], 1, Some(vec![f32::NAN; 8]))]), Err(MemoryError::Invalid(_))));
    }

    #[test]
    fn scope_statistics_follow_writes_and_deletes() {
        let dir = tempdir::Dir::new("scopes");
        let mut s = open(&dir);
        s.save(vec![
            record("a", "/org/eng", &["x", "y"], 1, Some(vec![1.0])),
            record("b", "/org/eng/api", &["y"], 5, Some(vec![1.0])),
            record("c", "/org/sales", &["z"], 3, Some(vec![1.0])),
            record("d", "/orgx", &["x"], 9, Some(vec![1.0])),
        ])
        .unwrap();
        let info = s.scope_summary("/org", "/org/").unwrap();
        // Raw prefix, as LanceDB's LIKE: "/orgx" is counted, but is no child.
        assert_eq!(info.record_count, 4);
        assert_eq!(info.categories, vec!["x", "y", "z"]);
        assert_eq!(info.oldest.as_deref(), Some("2026-01-01T00:00:01"));
        assert_eq!(info.newest.as_deref(), Some("2026-01-01T00:00:09"));
        assert_eq!(info.child_scopes, vec!["/org/eng", "/org/sales"]);
        assert_eq!(s.child_scopes("/", "/").unwrap(), vec!["/org", "/orgx"]);
        assert_eq!(s.category_counts("").unwrap(), vec![("x".into(), 2), ("y".into(), 2), ("z".into(), 1)]);
        let mut by_category = Filter::scope(ScopeMatch::Prefix("/org/eng".into()));
        by_category.categories = vec!["y".into()];
        assert_eq!(s.delete_matching(&by_category).unwrap(), 2);
        assert_eq!(s.category_counts("").unwrap(), vec![("x".into(), 1), ("z".into(), 1)]);
        assert_eq!(s.scope_summary("/org/eng", "/org/eng/").unwrap().record_count, 0);
        assert_eq!(s.delete_ids(&["c".into(), "c".into(), "nope".into()]).unwrap(), 1);
        assert_eq!(s.count_all().unwrap(), 1);
    }

    #[test]
    fn metadata_filters_use_python_equality() {
        let t = |s: &str| parse_json(s).unwrap();
        assert!(python_eq(&t("1"), &t("1.0")));
        assert!(python_eq(&t("true"), &t("1")));
        assert!(!python_eq(&t("NaN"), &t("NaN")));
        assert!(python_eq(&t("{\"a\": [1, 2]}"), &t("{\"a\": [1.0, 2]}")));
        assert!(!python_eq(&t("\"1\""), &t("1")));
        assert!(!python_eq(&t("null"), &t("0")));
    }

    #[test]
    fn a_second_connection_sees_writes_incrementally() {
        let dir = tempdir::Dir::new("two");
        let mut a = open(&dir);
        let mut b = open(&dir);
        a.save(vec![record("a", "/", &[], 1, Some(vec![1.0, 2.0]))]).unwrap();
        assert_eq!(b.count_all().unwrap(), 1);
        b.save(vec![record("b", "/", &[], 2, Some(vec![2.0, 2.0]))]).unwrap();
        a.delete_ids(&["a".into()]).unwrap();
        a.save(vec![record("a", "/", &[], 3, Some(vec![3.0, 2.0]))]).unwrap();
        b.touch(&["b".into()], "2027-01-01T00:00:00").unwrap();
        assert_eq!(b.count_all().unwrap(), 2);
        assert_eq!(b.get("a").unwrap().unwrap().created_key, 3);
        assert_eq!(a.get("b").unwrap().unwrap().last_accessed, "2027-01-01T00:00:00");
        b.reset_all().unwrap();
        assert_eq!(a.count_all().unwrap(), 0);
        let reopened = open(&dir).count_all().unwrap();
        assert_eq!(reopened, 0);
    }

    #[test]
    fn the_half_precision_pass_returns_the_exact_answer() {
        let Some(kernel) = half_squared_l2_kernel() else { return };
        let dir = tempdir::Dir::new("half");
        let mut s = open(&dir);
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32) / (1u64 << 31) as f32 - 0.5
        };
        let dim = 256;
        let base: Vec<Vec<f32>> = (0..40).map(|_| (0..dim).map(|_| next()).collect()).collect();
        // Near-duplicates and exact duplicates make the bounds overlap and the distances tie.
        let records: Vec<RecordData> = (0..600)
            .map(|i| {
                let v: Vec<f32> = base[i % 40].iter().map(|x| x + if i % 3 == 0 { 0.0 } else { next() * 1e-3 }).collect();
                record(&format!("r{i}"), if i % 2 == 0 { "/a" } else { "/b" }, &[], i as i64, Some(v))
            })
            .collect();
        s.save(records).unwrap();
        assert!(s.mirror.rows.len() * dim >= HALF_PASS_MIN_FLOATS);
        for q in 0..20 {
            let query: Vec<f32> = base[q].iter().map(|x| x + next() * 1e-2).collect();
            for keep in [1, 10, 57] {
                let filter_b = Filter::scope(ScopeMatch::Prefix("/b".into()));
                let exact = nearest_exact(&s.mirror, &query, keep, 0..s.mirror.rows.len());
                let key = |c: &Vec<Candidate>| c.iter().map(|c| (c.slot, c.distance.to_bits())).collect::<Vec<_>>();
                for parts in [1, 2, 3] {
                    let fast = nearest_two_pass(&s.mirror, &query, keep, |_| true, kernel, parts);
                    assert_eq!(key(&exact), key(&fast));
                }
                let admitted = |slot: usize| filter_b.admits(&s.mirror.rows[slot]);
                let exact = nearest_exact(&s.mirror, &query, keep, (0..s.mirror.rows.len()).filter(|&x| admitted(x)));
                let fast = nearest_two_pass(&s.mirror, &query, keep, admitted, kernel, 2);
                assert_eq!(key(&exact), key(&fast));
            }
        }
    }

    #[test]
    fn large_stores_search_through_the_index_and_see_later_writes() {
        let dir = tempdir::Dir::new("ann");
        let mut s = MemoryStore::open_with(dir.path().join("m.sqlite3"), Duration::from_secs(5), 200).unwrap();
        let dim = 16;
        // Clustered like embeddings: a centre per cluster, pseudo-random spread per row.
        let noise = |i: usize, d: usize| {
            let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add((d as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let x = (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((x >> 40) as f32) / (1u64 << 24) as f32 - 0.5
        };
        let point = |cluster: usize, i: usize| -> Vec<f32> {
            (0..dim).map(|d| ((cluster * 31 + d * 7) % 13) as f32 + noise(i, d)).collect()
        };
        let records = (0..1000).map(|i| record(&format!("r{i}"), "/", &[], i as i64, Some(point(i % 10, i)))).collect();
        s.save(records).unwrap();
        s.build_index().unwrap();
        let any = Filter::scope(ScopeMatch::Any);
        let mut exact_store = MemoryStore::open_with(dir.path().join("m.sqlite3"), Duration::from_secs(5), usize::MAX).unwrap();
        let mut hits = 0;
        let queries = 40;
        for q in 0..queries {
            let query = point(q % 10, 5000 + q);
            let approx: Vec<String> = s.search(&query, &any, 10, 0.0).unwrap().into_iter().map(|(r, _)| r.id).collect();
            let exact: Vec<String> = exact_store.search(&query, &any, 10, 0.0).unwrap().into_iter().map(|(r, _)| r.id).collect();
            hits += approx.iter().filter(|id| exact.contains(id)).count();
        }
        assert!(hits * 100 >= queries * 10 * 95, "recall@10 {}", hits as f64 / (queries * 10) as f64);
        // Past calibration, the live check measured the graph's recall and kept it.
        let status = s.index_status();
        assert!(status.verified_searches >= CALIBRATION_SEARCHES && status.measured_recall.unwrap() >= MIN_RECALL, "{status:?}");
        assert_eq!(status.state, "ready");
        // A row written after the build is found; a deleted one is not.
        let target = vec![100.0; dim];
        s.save(vec![record("late", "/", &[], 1, Some(target.clone()))]).unwrap();
        assert_eq!(s.search(&target, &any, 1, 0.0).unwrap()[0].0.id, "late");
        let nearest = s.search(&point(3, 0), &any, 1, 0.0).unwrap()[0].0.id.clone();
        s.delete_ids(&[nearest.clone()]).unwrap();
        assert_ne!(s.search(&point(3, 0), &any, 1, 0.0).unwrap()[0].0.id, nearest);
        // Scores are exact distances even through the index.
        let (hit, score) = s.search(&target, &any, 1, 0.0).unwrap().remove(0);
        assert_eq!(score, 1.0 / (1.0 + squared_l2(&target, hit.vector.as_ref().unwrap()) as f64));
    }

    #[test]
    fn a_new_store_object_loads_the_saved_index_instead_of_building_it() {
        let dir = tempdir::Dir::new("ann-saved");
        let path = dir.path().join("m.sqlite3");
        let dim = 16;
        let vector = |i: usize| -> Vec<f32> { (0..dim).map(|d| ((i * 31 + d * 7) % 101) as f32).collect() };
        let mut first = MemoryStore::open_with(&path, Duration::from_secs(5), 200).unwrap();
        first.save((0..1000).map(|i| record(&format!("r{i}"), "/", &[], i as i64, Some(vector(i)))).collect()).unwrap();
        assert!(first.build_index().unwrap());
        assert_eq!(first.index_status().source, Some("built"));
        let saved = index_file::index_dir(&path).unwrap();
        assert!(saved.join("index.rows").exists());
        // Written after the save: a new row, a changed vector, a deletion.
        first.save(vec![record("late", "/", &[], 1, Some(vec![500.0; dim]))]).unwrap();
        first.update(record("r7", "/", &[], 7, Some(vec![-500.0; dim]))).unwrap();
        first.delete_ids(&["r8".to_string()]).unwrap();

        let mut later = MemoryStore::open_with(&path, Duration::from_secs(5), 200).unwrap();
        let any = Filter::scope(ScopeMatch::Any);
        let mut exact = MemoryStore::open_with(&path, Duration::from_secs(5), usize::MAX).unwrap();
        later.search(&vector(3), &any, 5, 0.0).unwrap(); // starts the background load
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while later.index_status().state != "ready" {
            assert!(std::time::Instant::now() < deadline, "{:?}", later.index_status());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(later.index_status().source, Some("loaded"));
        for (query, expected) in [(vec![500.0; dim], "late"), (vec![-500.0; dim], "r7")] {
            assert_eq!(later.search(&query, &any, 1, 0.0).unwrap()[0].0.id, expected);
        }
        let near_deleted = later.search(&vector(8), &any, 10, 0.0).unwrap();
        assert!(near_deleted.iter().all(|(r, _)| r.id != "r8"));
        for i in (0..1000).step_by(97) {
            let ids = |s: &mut MemoryStore| s.search(&vector(i), &any, 5, 0.0).unwrap().into_iter().map(|(r, _)| r.id).collect::<Vec<_>>();
            assert_eq!(ids(&mut later), ids(&mut exact));
        }
        // Emptying the store forgets the saved index.
        later.reset_all().unwrap();
        assert!(!saved.exists());
    }

    #[test]
    fn the_index_is_checked_on_live_queries_and_switched_off_when_it_misses() {
        let dir = tempdir::Dir::new("ann-check");
        let mut s = MemoryStore::open_with(dir.path().join("m.sqlite3"), Duration::from_secs(5), 100).unwrap();
        let mut seed = 5u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32) / (1u64 << 31) as f32 - 0.5
        };
        let dim = 64;
        let records = (0..3000).map(|i| record(&format!("r{i}"), "/", &[], i, Some((0..dim).map(|_| next()).collect()))).collect();
        s.save(records).unwrap();
        // An index that misses for sure: a graph over other vectors, under the store's labels.
        let garbage: Vec<f32> = (0..3000 * dim).map(|_| next()).collect();
        let m = &mut s.mirror;
        m.ann.index = Some(AnnIndex::build(&garbage, dim, &m.labels, m.next_label));
        let any = Filter::scope(ScopeMatch::Any);
        let mut exact = MemoryStore::open_with(dir.path().join("m.sqlite3"), Duration::from_secs(5), usize::MAX).unwrap();
        let ids = |r: Vec<(RecordData, f64)>| r.into_iter().map(|(r, _)| r.id).collect::<Vec<_>>();
        for _ in 0..CALIBRATION_SEARCHES {
            // Searches under check return the exact answer whatever the index found.
            let query: Vec<f32> = (0..dim).map(|_| next()).collect();
            assert_eq!(ids(s.search(&query, &any, 10, 0.0).unwrap()), ids(exact.search(&query, &any, 10, 0.0).unwrap()));
        }
        let status = s.index_status();
        assert_eq!(status.verified_searches, CALIBRATION_SEARCHES);
        assert!(status.measured_recall.unwrap() < 0.5, "{status:?}");
        assert_eq!(status.state, "disabled");
        let query: Vec<f32> = (0..dim).map(|_| next()).collect();
        assert_eq!(ids(s.search(&query, &any, 10, 0.0).unwrap()), ids(exact.search(&query, &any, 10, 0.0).unwrap()));
        assert_eq!(s.index_status().state, "disabled", "no rebuild once switched off");

        // The switch itself, on given verdicts.
        let mut state = AnnState { index: Some(AnnIndex::build(&garbage, dim, &[0], 1)), ..AnnState::default() };
        for _ in 0..CALIBRATION_SEARCHES {
            assert!(state.verification_due());
            state.record_verification(9, 10);
        }
        assert!(state.disabled && state.index.is_none(), "recall 0.9 must switch the index off");
        let mut state = AnnState::default();
        for _ in 0..CALIBRATION_SEARCHES {
            state.verification_due();
            state.record_verification(10, 10);
        }
        assert!(!state.disabled);
        assert!(!state.verification_due(), "after calibration only one search in {VERIFY_EVERY} is checked");
    }

    #[test]
    fn category_filters_past_the_first_64_categories() {
        let dir = tempdir::Dir::new("cats");
        let mut s = open(&dir);
        let names: Vec<String> = (0..70).map(|i| format!("c{i}")).collect();
        let records = (0..70)
            .map(|i| record(&format!("r{i}"), "/", &[names[i].as_str(), "shared"], i as i64, Some(vec![i as f32, 0.0])))
            .collect();
        s.save(records).unwrap();
        let search = |s: &mut MemoryStore, categories: &[&str]| -> Vec<String> {
            let mut filter = Filter::scope(ScopeMatch::Any);
            filter.categories = categories.iter().map(|c| c.to_string()).collect();
            s.search(&[0.0, 0.0], &filter, 100, 0.0).unwrap().into_iter().map(|(r, _)| r.id).collect()
        };
        assert_eq!(search(&mut s, &["c3"]), vec!["r3"]);
        assert_eq!(search(&mut s, &["c66", "c2"]), vec!["r2", "r66"]);
        assert_eq!(search(&mut s, &["nowhere"]), Vec::<String>::new());
        assert_eq!(search(&mut s, &["shared"]).len(), 70);
    }

    #[test]
    fn list_is_newest_first_and_paged() {
        let dir = tempdir::Dir::new("list");
        let mut s = open(&dir);
        let records = (0..10).map(|i| record(&format!("r{i}"), "/a", &[], i, Some(vec![0.0]))).collect();
        s.save(records).unwrap();
        let page: Vec<String> = s.list(&ScopeMatch::Any, 3, 2).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(page, vec!["r7", "r6", "r5"]);
        assert!(s.list(&ScopeMatch::Any, 3, 10).unwrap().is_empty());
    }

    #[test]
    fn stores_opened_at_once_on_a_new_file_all_open() {
        for round in 0..20 {
            let dir = tempdir::Dir::new(&format!("race-{round}"));
            let path = dir.path().join("m.sqlite3");
            let opened = at_once(4, move || MemoryStore::open(&path, Duration::from_secs(5)).and_then(|mut s| s.count_all()));
            for count in opened {
                assert_eq!(count.unwrap(), 0);
            }
        }
    }
}
