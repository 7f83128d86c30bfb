//! A connection pool per SQLite file, for the fork's database component.
//!
//! Upstream opens, commits and closes a `sqlite3` connection per call; here
//! connections are opened once (WAL, busy timeout, statement cache) and reused.
//! Every statement is a constant of the caller's with `?` parameters: no SQL
//! is assembled from values.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{Value as SqlValue, ValueRef};
use std::ffi::{c_char, c_int, c_void};

use rusqlite::{ffi, params_from_iter, Connection, OpenFlags};

use crate::locked;

/// A value crossing the Python boundary: SQLite's five storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl From<&Value> for SqlValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Null => SqlValue::Null,
            Value::Integer(i) => SqlValue::Integer(*i),
            Value::Real(f) => SqlValue::Real(*f),
            Value::Text(s) => SqlValue::Text(s.clone()),
            Value::Blob(b) => SqlValue::Blob(b.clone()),
        }
    }
}

/// Which Python exception an error becomes (the `sqlite3` module's hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `sqlite3.OperationalError`: busy, locked, I/O, cannot open, ...
    Operational,
    /// `sqlite3.IntegrityError`: constraint violations.
    Integrity,
    /// `sqlite3.DatabaseError`: corrupt file, not a database.
    Database,
    /// `sqlite3.ProgrammingError`: misuse, e.g. a closed pool or wrong parameter count.
    Programming,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        let kind = match &err {
            rusqlite::Error::SqliteFailure(e, _) => match e.code {
                ErrorCode::ConstraintViolation => ErrorKind::Integrity,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::Database,
                ErrorCode::ApiMisuse => ErrorKind::Programming,
                _ => ErrorKind::Operational,
            },
            rusqlite::Error::InvalidParameterCount(..) | rusqlite::Error::InvalidParameterName(_) => {
                ErrorKind::Programming
            }
            _ => ErrorKind::Operational,
        };
        // sqlite3's messages are SQLite's own text ("database is locked", ...);
        // upstream code matches on them (e.g. "locked" in init_db's retry).
        let message = match &err {
            rusqlite::Error::SqliteFailure(e, Some(msg)) if !msg.is_empty() => msg.clone(),
            rusqlite::Error::SqliteFailure(e, _) => e.to_string(),
            other => other.to_string(),
        };
        DbError { kind, message }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Identity of the file a pooled connection was opened on, so a database
/// deleted (or replaced) behind the pool's back is reopened, not written into
/// an unlinked inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| FileId { dev: 0, ino: 0 })
    }
}

/// Switch `conn`'s file to WAL (a no-op when it already is), waiting up to
/// `busy_timeout` for other connections.
///
/// The switch upgrades the pragma's own read lock to a write lock, and SQLite
/// returns SQLITE_BUSY for such an upgrade without calling the busy handler
/// (it could deadlock). Two processes creating one file at the same moment
/// hit exactly that, so the pragma is retried here until the deadline.
pub fn enter_wal_mode(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    let deadline = Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get::<_, String>(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.map(|_mode| ()),
        }
    }
}

/// WAL frames after which a commit asks for a checkpoint (SQLite's own
/// auto-checkpoint threshold, about 4 MB of 4 KiB pages).
const CHECKPOINT_FRAMES: i32 = 1000;
/// WAL frames after which the committing connection checkpoints by itself:
/// the background checkpoints are not keeping up, or this is a forked child
/// without the checkpoint thread.
const CHECKPOINT_INLINE_FRAMES: i32 = 8000;

#[derive(Default)]
struct CheckpointState {
    requested: bool,
    stopping: bool,
    /// The thread and the process that started it.
    worker: Option<(u32, JoinHandle<()>)>,
}

/// The checkpoints of one pool's file, on a thread of its own.
///
/// SQLite's auto-checkpoint runs inside the commit that crosses the
/// threshold: every 35th or so save of a 100 KB flow state paid a 4 MB copy
/// and two fsyncs (about 15 ms on this machine). Here that commit only wakes
/// this thread, which runs a PASSIVE checkpoint (it never waits for, nor
/// blocks, readers and writers) on a short-lived connection of its own.
pub(crate) struct Checkpointer {
    path: PathBuf,
    state: Mutex<CheckpointState>,
    wake: Condvar,
    /// Checkpoints asked for, and those this thread ran to completion.
    requests: std::sync::atomic::AtomicUsize,
    completed: std::sync::atomic::AtomicUsize,
}

impl Checkpointer {
    pub(crate) fn new(path: PathBuf) -> Arc<Checkpointer> {
        Arc::new(Checkpointer {
            path,
            state: Mutex::new(CheckpointState::default()),
            wake: Condvar::new(),
            requests: Default::default(),
            completed: Default::default(),
        })
    }

    fn request(self: &Arc<Self>) {
        let mut state = locked(&self.state);
        if state.stopping {
            return;
        }
        state.requested = true;
        self.requests.fetch_add(1, Ordering::Relaxed);
        if state.worker.is_none() {
            let me = Arc::clone(self);
            // Without a thread (spawn failed), the inline threshold still bounds the WAL.
            if let Ok(handle) = std::thread::Builder::new().name("crewai-rust-checkpoint".into()).spawn(move || me.run()) {
                state.worker = Some((std::process::id(), handle));
            }
        }
        self.wake.notify_one();
    }

    fn run(&self) {
        loop {
            {
                let mut state = locked(&self.state);
                while !state.requested && !state.stopping {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.stopping {
                    return;
                }
                state.requested = false;
            }
            self.checkpoint();
        }
    }

    /// One PASSIVE checkpoint. The connection lives only for it, so no
    /// connection of this thread outlives a pool's close or keeps a removed
    /// file open. Failures (busy, file gone) wait for the next request.
    fn checkpoint(&self) {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX; // never creates the file
        if file_id(&self.path).is_none() {
            return;
        }
        if let Ok(conn) = Connection::open_with_flags(&self.path, flags) {
            // (busy, frames in the WAL, frames copied); busy = 1 when another checkpoint ran.
            let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0));
            if result == Ok(0) {
                self.completed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stop the thread, waiting for a checkpoint in progress.
    pub(crate) fn stop(&self) {
        if let Some((pid, handle)) = self.signal_stop() {
            if pid == std::process::id() {
                let _ = handle.join(); // a forked child has no such thread to wait for
            }
        }
    }

    /// Stop the thread without waiting for it: what a drop does. A store or pool
    /// dropped by Python's garbage collector is dropped with the GIL held, and a
    /// checkpoint in progress may wait out its busy timeout; the thread ends on
    /// its own once it sees the flag (it holds only its own connection).
    pub(crate) fn stop_without_waiting(&self) {
        drop(self.signal_stop());
    }

    fn signal_stop(&self) -> Option<(u32, std::thread::JoinHandle<()>)> {
        let mut state = locked(&self.state);
        state.stopping = true;
        self.wake.notify_all();
        state.worker.take()
    }

    /// What each pooled connection runs after a commit (it replaces SQLite's
    /// auto-checkpoint, which is a WAL hook too). Set through the C API:
    /// rusqlite's `wal_hook` keeps its closure with `sqlite3_set_clientdata`,
    /// which SQLite only has from 3.44, and the system library may be older.
    pub(crate) fn install(self: &Arc<Self>, conn: &Connection) -> WalHook {
        let hook = WalHook(Box::into_raw(Box::new(Arc::clone(self))));
        // SAFETY: the handle is this live connection's; `hook` outlives the
        // connection (Pooled drops `conn` first), so the argument stays valid
        // for every call SQLite makes.
        unsafe { ffi::sqlite3_wal_hook(conn.handle(), Some(after_commit), hook.0.cast()) };
        hook
    }
}

/// SQLite's WAL hook: runs in the committing thread after each commit.
unsafe extern "C" fn after_commit(
    checkpointer: *mut c_void,
    db: *mut ffi::sqlite3,
    database: *const c_char,
    frames: c_int,
) -> c_int {
    // A panic must not unwind into SQLite's C frames.
    let _ = std::panic::catch_unwind(|| {
        if frames >= CHECKPOINT_INLINE_FRAMES {
            // SAFETY: SQLite passes its own live handle and database name.
            unsafe { ffi::sqlite3_wal_checkpoint(db, database) };
        } else if frames >= CHECKPOINT_FRAMES {
            // SAFETY: the pointer is the Arc WalHook keeps alive (see install).
            unsafe { &*checkpointer.cast::<Arc<Checkpointer>>() }.request();
        }
    });
    ffi::SQLITE_OK
}

/// One connection's checkpoints on a background thread, for a connection that
/// is not pooled (the memory store's). Declare it after the connection: the
/// connection must close before the hook's argument is freed. Dropping it
/// stops the thread, waiting for a checkpoint in progress.
pub(crate) struct BackgroundCheckpoints {
    _hook: WalHook,
    checkpointer: Arc<Checkpointer>,
}

impl BackgroundCheckpoints {
    pub(crate) fn install(conn: &Connection, path: &Path) -> BackgroundCheckpoints {
        let checkpointer = Checkpointer::new(path.to_path_buf());
        BackgroundCheckpoints { _hook: checkpointer.install(conn), checkpointer }
    }
}

impl Drop for BackgroundCheckpoints {
    fn drop(&mut self) {
        // Waits: the memory store drops its checkpoints as it closes (with the
        // GIL released by the binding), and a clean exit must leave no -wal.
        self.checkpointer.stop();
    }
}

/// The WAL hook's argument, owned by the pooled connection it serves.
pub(crate) struct WalHook(*mut Arc<Checkpointer>);

// SAFETY: it only owns an Arc<Checkpointer>, which is Send + Sync.
unsafe impl Send for WalHook {}

impl Drop for WalHook {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in install, freed once, here.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

struct Pooled {
    // Declared before `_wal_hook`: the connection closes before its hook's argument is freed.
    conn: Connection,
    _wal_hook: WalHook,
    file: Option<FileId>,
}

pub struct Pool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Pooled>>,
    max_idle: usize,
    closed: AtomicBool,
    checkpointer: Arc<Checkpointer>,
}

impl Pool {
    /// Open (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: impl Into<PathBuf>, busy_timeout: Duration, max_idle: usize) -> DbResult<Pool> {
        let path = path.into();
        let pool = Pool {
            checkpointer: Checkpointer::new(path.clone()),
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
            closed: AtomicBool::new(false),
        };
        let first = pool.connect()?;
        pool.release(first);
        Ok(pool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> DbResult<Pooled> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        set_busy_timeout(&conn, self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(64);
        // journal_mode is persistent in the file; upstream sets WAL too, so a
        // file written by either backend stays in WAL. This also reads the
        // header, so a file that is not a database fails here, at open.
        enter_wal_mode(&conn, self.busy_timeout)?;
        // WAL + NORMAL: a commit survives a process crash; only an OS crash or
        // power loss may drop the last transactions (the file stays intact).
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        // Sorts (kickoff outputs are read ORDER BY task_index) stay in
        // memory: past cache_size (2 MB) SQLite otherwise spills them to a
        // temporary file and reads them back, which was a sixth of loading
        // 1,000 real task outputs. The caller holds every sorted row anyway.
        conn.execute_batch("PRAGMA temp_store=MEMORY")?;
        install_jsonb_fallback(&conn)?;
        let wal_hook = self.checkpointer.install(&conn);
        Ok(Pooled { conn, _wal_hook: wal_hook, file: file_id(&self.path) })
    }

    fn acquire(&self) -> DbResult<Pooled> {
        if self.closed.load(Ordering::Acquire) {
            return Err(DbError {
                kind: ErrorKind::Programming,
                message: "Cannot operate on a closed database.".into(),
            });
        }
        let current = file_id(&self.path);
        loop {
            let candidate = locked(&self.idle).pop();
            match candidate {
                Some(pooled) if pooled.file.is_some() && pooled.file == current => return Ok(pooled),
                Some(_stale) => continue, // the file was removed or replaced: drop it
                None => return self.connect(),
            }
        }
    }

    fn release(&self, pooled: Pooled) {
        if self.closed.load(Ordering::Acquire) || !pooled.conn.is_autocommit() {
            return; // closed, or left mid-transaction by an error: do not reuse
        }
        let mut idle = locked(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(pooled);
        }
    }

    /// Check out one connection for a sequence of statements (a DB-API
    /// connection's lifetime); it returns to the pool when the lease drops.
    pub fn lease(self: &Arc<Self>, busy_timeout: Duration) -> DbResult<Lease> {
        let pooled = self.acquire()?;
        set_busy_timeout(&pooled.conn, busy_timeout)?;
        Ok(Lease { pool: Arc::clone(self), pooled: Some(pooled) })
    }

    /// Close every pooled connection; later calls fail with a ProgrammingError.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // First the checkpoint thread, so that no checkpoint runs once this returns.
        self.checkpointer.stop();
        locked(&self.idle).clear();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Background checkpoints run to completion so far.
    pub fn background_checkpoints(&self) -> usize {
        self.checkpointer.completed.load(Ordering::Relaxed)
    }
}

/// Where a cell of [`Rows`] keeps its value: text and blobs as byte ranges
/// of one shared buffer.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(usize, usize),
    Blob(usize, usize),
}

/// A statement's result rows, row-major in one allocation plus one byte
/// buffer: a query of many rows costs no allocation per row or per string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    width: usize,
    cells: Vec<Cell>,
    bytes: Vec<u8>,
}

impl Rows {
    fn push(&mut self, value: ValueRef<'_>) {
        let mut span = |data: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(data);
            (start, self.bytes.len())
        };
        let cell = match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => {
                let (start, end) = span(t);
                Cell::Text(start, end)
            }
            ValueRef::Blob(b) => {
                let (start, end) = span(b);
                Cell::Blob(start, end)
            }
        };
        self.cells.push(cell);
    }

    pub fn len(&self) -> usize {
        if self.width == 0 {
            0
        } else {
            self.cells.len() / self.width
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Row `index`'s values; text as SQLite stored it (UTF-8 unless a
    /// writer stored otherwise).
    pub fn row(&self, index: usize) -> impl ExactSizeIterator<Item = ValueRef<'_>> + '_ {
        self.cells[index * self.width..(index + 1) * self.width].iter().map(|cell| match *cell {
            Cell::Null => ValueRef::Null,
            Cell::Integer(i) => ValueRef::Integer(i),
            Cell::Real(f) => ValueRef::Real(f),
            Cell::Text(start, end) => ValueRef::Text(&self.bytes[start..end]),
            Cell::Blob(start, end) => ValueRef::Blob(&self.bytes[start..end]),
        })
    }

    /// Every row as owned values.
    pub fn to_values(&self) -> Vec<Vec<Value>> {
        (0..self.len()).map(|i| self.row(i).map(Value::from).collect()).collect()
    }
}

/// What one statement produced, as `sqlite3.Cursor` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Rows,
    /// Rows changed by an INSERT/UPDATE/DELETE/REPLACE, else -1.
    pub rowcount: i64,
    pub lastrowid: i64,
}

/// One pooled connection checked out by a caller.
pub struct Lease {
    pool: Arc<Pool>,
    pooled: Option<Pooled>,
}

fn closed_error() -> DbError {
    DbError { kind: ErrorKind::Programming, message: "Cannot operate on a closed database.".into() }
}

/// INSERT/UPDATE/DELETE/REPLACE: the statements before which Python's
/// `sqlite3` (legacy transaction control) opens a transaction implicitly.
fn is_dml(sql: &str) -> bool {
    let head = sql.trim_start().as_bytes();
    ["INSERT", "UPDATE", "DELETE", "REPLACE"]
        .iter()
        .any(|kw| head.len() >= kw.len() && head[..kw.len()].eq_ignore_ascii_case(kw.as_bytes()))
}

impl Lease {
    fn conn(&self) -> DbResult<&Connection> {
        self.pooled.as_ref().map(|p| &p.conn).ok_or_else(closed_error)
    }

    pub fn in_transaction(&self) -> bool {
        self.pooled.as_ref().is_some_and(|p| !p.conn.is_autocommit())
    }

    /// Run one statement with `sqlite3`'s implicit-transaction rule.
    pub fn execute(&self, sql: &str, params: &[Value]) -> DbResult<Outcome> {
        let conn = self.conn()?;
        let dml = is_dml(sql);
        let mut stmt = conn.prepare_cached(sql).map_err(|err| match err {
            rusqlite::Error::MultipleStatement => DbError {
                kind: ErrorKind::Programming,
                message: "You can only execute one statement at a time.".into(),
            },
            other => other.into(),
        })?;
        if stmt.parameter_count() != params.len() {
            return Err(DbError {
                kind: ErrorKind::Programming,
                message: format!(
                    "Incorrect number of bindings supplied. The current statement uses {}, and there are {} supplied.",
                    stmt.parameter_count(),
                    params.len()
                ),
            });
        }
        if dml && conn.is_autocommit() {
            conn.execute_batch("BEGIN")?;
        }
        let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
        let mut rows = Rows { width: columns.len(), ..Rows::default() };
        if columns.is_empty() {
            stmt.execute(params_from_iter(params.iter().map(SqlValue::from)))?;
        } else {
            let mut cursor = stmt.query(params_from_iter(params.iter().map(SqlValue::from)))?;
            while let Some(row) = cursor.next()? {
                for i in 0..rows.width {
                    rows.push(row.get_ref(i)?);
                }
            }
        }
        let rowcount = if dml { conn.changes() as i64 } else { -1 };
        Ok(Outcome { columns, rows, rowcount, lastrowid: conn.last_insert_rowid() })
    }

    pub fn commit(&self) -> DbResult<()> {
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    pub fn rollback(&self) -> DbResult<()> {
        let conn = self.conn()?;
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Roll back anything uncommitted (as closing a `sqlite3` connection does)
    /// and hand the connection back to the pool.
    pub fn close(&mut self) {
        if let Some(pooled) = self.pooled.take() {
            if !pooled.conn.is_autocommit() {
                let _ = pooled.conn.execute_batch("ROLLBACK");
            }
            self.pool.release(pooled);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.pooled.is_none()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.close();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.checkpointer.stop_without_waiting();
    }
}

/// The version of the SQLite library in use, e.g. "3.40.1": the system's
/// libsqlite3, the library Python's `sqlite3` module loads.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// Where `sqlite3_libversion` lives in this process: equal to the address
/// Python's `_sqlite3` resolves for it exactly when both use one library.
pub fn library_address() -> usize {
    ffi::sqlite3_libversion as *const () as usize
}

/// `sqlite3_busy_timeout` through its pragma. rusqlite's `busy_timeout` also
/// records the handler with `sqlite3_set_clientdata`, which SQLite only has
/// from 3.44: calling it would not link against an older system library.
pub fn set_busy_timeout(conn: &Connection, timeout: Duration) -> rusqlite::Result<()> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    conn.pragma_update(None, "busy_timeout", ms)
}

/// First SQLite release with `jsonb()` (3.45.0).
const JSONB_VERSION_NUMBER: i32 = 3_045_000;

/// Where the library predates `jsonb()`, define it as `json()`: the value is
/// stored as minified JSON text instead of the binary format. crewai's
/// checkpoint provider writes `jsonb(?)` and reads `json(data)`, and every
/// SQLite JSON function reads text JSON, so its checkpoints work on such a
/// library and stay readable by any SQLite, on either backend. Malformed JSON
/// is refused with `json()`'s own error, as `jsonb()` refuses it.
fn install_jsonb_fallback(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    if rusqlite::version_number() >= JSONB_VERSION_NUMBER {
        return Ok(());
    }
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("jsonb", 1, flags, |ctx| {
        // SAFETY: the connection outlives the call, and SQLite allows a
        // function to run statements on the connection that called it.
        let conn = unsafe { ctx.get_connection()? };
        let value: SqlValue = ctx.get(0)?;
        conn.query_row("SELECT json(?1)", [value], |row| row.get::<_, SqlValue>(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at_once;
    use std::sync::Arc;

    fn pool(dir: &Path) -> Arc<Pool> {
        Arc::new(Pool::open(dir.join("t.db"), Duration::from_secs(5), 4).unwrap())
    }

    /// One statement on its own lease, committed: what a `with closing(connect())` block does.
    fn run(p: &Arc<Pool>, sql: &str, params: &[Value]) -> DbResult<Outcome> {
        let lease = p.lease(Duration::from_secs(5))?;
        let out = lease.execute(sql, params)?;
        lease.commit()?;
        Ok(out)
    }

    fn rows(p: &Arc<Pool>, sql: &str) -> Vec<Vec<Value>> {
        run(p, sql, &[]).unwrap().rows.to_values()
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "crewai-rust-sqlite-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trips_every_storage_class() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (a, b, c, d, e)", &[]).unwrap();
        let row = vec![
            Value::Null,
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("héllo".into()),
            Value::Blob(vec![0, 1, 255]),
        ];
        assert_eq!(run(&p, "INSERT INTO t VALUES (?, ?, ?, ?, ?)", &row).unwrap().rowcount, 1);
        assert_eq!(rows(&p, "SELECT * FROM t"), vec![row]);
    }

    #[test]
    fn wal_mode_and_jsonb_are_available() {
        let dir = tempdir();
        let p = pool(&dir);
        let mode = rows(&p, "PRAGMA journal_mode");
        assert_eq!(mode, vec![vec![Value::Text("wal".into())]]);
        let json = run(&p, "SELECT json(jsonb(?))", &[Value::Text("{\"a\": [1, 2]}".into())]).unwrap().rows.to_values();
        assert_eq!(json, vec![vec![Value::Text("{\"a\":[1,2]}".into())]]);
    }

    #[test]
    fn an_uncommitted_transaction_rolls_back_on_close() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", &[]).unwrap();
        let lease = p.lease(Duration::from_secs(1)).unwrap();
        lease.execute("INSERT INTO t (id, v) VALUES (1, 'a')", &[]).unwrap();
        let err = lease.execute("INSERT INTO t (id, v) VALUES (2, NULL)", &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Integrity);
        assert!(err.message.contains("NOT NULL"), "{}", err.message);
        drop(lease); // closed without commit: both inserts are gone
        assert!(rows(&p, "SELECT * FROM t").is_empty());
        // The pool still works after the failure.
        assert_eq!(run(&p, "INSERT INTO t VALUES (3, 'c')", &[]).unwrap().rowcount, 1);
    }

    #[test]
    fn errors_keep_sqlites_messages() {
        let dir = tempdir();
        let p = pool(&dir);
        let err = run(&p, "SELECT * FROM missing", &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Operational);
        assert_eq!(err.message, "no such table: missing");
        let err = run(&p, "SELECT ?", &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Programming);
    }

    #[test]
    fn a_file_that_is_not_a_database_fails_at_open_and_is_not_overwritten() {
        let dir = tempdir();
        let path = dir.join("junk.db");
        let junk = vec![b'x'; 4096];
        std::fs::write(&path, &junk).unwrap();
        let err = Pool::open(&path, Duration::from_secs(1), 2).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Database);
        assert!(err.message.contains("not a database"), "{}", err.message);
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }

    #[test]
    fn closed_pool_refuses_work() {
        let dir = tempdir();
        let p = pool(&dir);
        p.close();
        let err = p.lease(Duration::from_secs(1)).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Programming);
        assert!(p.is_closed());
    }

    #[test]
    fn removed_file_is_recreated_not_written_into_the_unlinked_inode() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (v)", &[]).unwrap();
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("t.db{ext}")));
        }
        run(&p, "CREATE TABLE t (v)", &[]).unwrap();
        run(&p, "INSERT INTO t VALUES (1)", &[]).unwrap();
        let other = Connection::open(dir.join("t.db")).unwrap();
        let n: i64 = other.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (v INTEGER)", &[]).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        run(&p, "INSERT INTO t VALUES (?)", &[Value::Integer(t * 1000 + i)]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rows(&p, "SELECT count(*) FROM t"), vec![vec![Value::Integer(400)]]);
    }

    #[test]
    fn lease_follows_sqlite3_implicit_transactions() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (v INTEGER)", &[]).unwrap();
        let mut lease = p.lease(Duration::from_secs(1)).unwrap();
        let out = lease.execute("  insert INTO t VALUES (?)", &[Value::Integer(1)]).unwrap();
        assert_eq!(out.rowcount, 1);
        assert!(lease.in_transaction());
        // Another connection does not see the uncommitted row.
        assert_eq!(rows(&p, "SELECT count(*) FROM t"), vec![vec![Value::Integer(0)]]);
        lease.commit().unwrap();
        assert!(!lease.in_transaction());
        lease.execute("INSERT INTO t VALUES (2)", &[]).unwrap();
        lease.close(); // uncommitted: rolled back
        assert_eq!(rows(&p, "SELECT count(*) FROM t"), vec![vec![Value::Integer(1)]]);
        assert_eq!(lease.execute("SELECT 1", &[]).unwrap_err().kind, ErrorKind::Programming);
    }

    #[test]
    fn lease_reports_rows_and_rejects_misuse() {
        let dir = tempdir();
        let p = pool(&dir);
        let lease = p.lease(Duration::from_secs(1)).unwrap();
        let out = lease.execute("SELECT 1 AS one, 'x' AS two", &[]).unwrap();
        assert_eq!(out.columns, vec!["one", "two"]);
        assert_eq!(out.rows.to_values(), vec![vec![Value::Integer(1), Value::Text("x".into())]]);
        assert_eq!(out.rowcount, -1);
        let err = lease.execute("SELECT ?", &[]).unwrap_err();
        assert!(err.message.starts_with("Incorrect number of bindings supplied"), "{}", err.message);
        let err = lease.execute("SELECT 1; SELECT 2", &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Programming);
    }

    #[test]
    fn jsonb_refuses_malformed_json_and_keeps_null_whatever_the_library() {
        let dir = tempdir();
        let p = pool(&dir);
        let err = run(&p, "SELECT jsonb(?)", &[Value::Text("{nope".into())]).unwrap_err();
        assert!(err.message.contains("malformed JSON"), "{}", err.message);
        assert_eq!(run(&p, "SELECT jsonb(NULL)", &[]).unwrap().rows.to_values(), vec![vec![Value::Null]]);
        let stored = run(&p, "SELECT typeof(jsonb(?))", &[Value::Text("[1]".into())]).unwrap().rows.to_values();
        let expected = if rusqlite::version_number() >= JSONB_VERSION_NUMBER { "blob" } else { "text" };
        assert_eq!(stored, vec![vec![Value::Text(expected.into())]]);
    }

    #[test]
    fn pools_opened_at_once_on_a_new_file_all_open() {
        // The WAL switch of a new file is a lock upgrade SQLite does not wait
        // for; several openers racing on it must still all succeed.
        for round in 0..20 {
            let path = tempdir().join(format!("race-{round}.db"));
            for opened in at_once(4, move || Pool::open(&path, Duration::from_secs(5), 1).map(|_| ())) {
                opened.unwrap();
            }
        }
    }

    fn wal_bytes(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn commits_past_the_threshold_are_checkpointed_in_the_background() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (v BLOB)", &[]).unwrap();
        let blob = Value::Blob(vec![7; 100_000]); // about 25 WAL frames per commit
        // 20 MB in all: without checkpoints the WAL would hold all of it.
        let requests = || p.checkpointer.requests.load(Ordering::Relaxed);
        for _ in 0..200 {
            let (asked, done) = (requests(), p.background_checkpoints());
            run(&p, "INSERT INTO t VALUES (?)", std::slice::from_ref(&blob)).unwrap();
            if requests() > asked {
                // The commit asked for a checkpoint: wait for it, as the time between saves
                // lets the thread catch up (a thread that never checkpoints fails here).
                let deadline = Instant::now() + Duration::from_secs(10);
                while p.background_checkpoints() == done {
                    assert!(Instant::now() < deadline, "no background checkpoint after a request");
                    std::thread::yield_now();
                }
            }
        }
        assert!(p.background_checkpoints() >= 4, "{} checkpoints", p.background_checkpoints());
        // The WAL was restarted after checkpoints: far below the 20 MB written
        // (and below the inline threshold, so the thread did it).
        let bound = 3 * (CHECKPOINT_FRAMES as u64) * 4200;
        assert!(wal_bytes(&dir.join("t.db")) < bound, "{} bytes of WAL", wal_bytes(&dir.join("t.db")));
        assert_eq!(rows(&p, "SELECT count(*) FROM t"), vec![vec![Value::Integer(200)]]);
        p.close();
        assert!(locked(&p.checkpointer.state).worker.is_none(), "close joins the checkpoint thread");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_the_thread_the_committing_connection_checkpoints() {
        let dir = tempdir();
        let p = pool(&dir);
        run(&p, "CREATE TABLE t (v BLOB)", &[]).unwrap();
        let lease = p.lease(Duration::from_secs(5)).unwrap();
        p.checkpointer.stop(); // as in a closed pool, or a forked child
        let blob = Value::Blob(vec![7; 400_000]);
        for _ in 0..120 {
            lease.execute("INSERT INTO t VALUES (?)", std::slice::from_ref(&blob)).unwrap();
            lease.commit().unwrap();
        }
        // 48 MB written; checkpointed inline past CHECKPOINT_INLINE_FRAMES, so the WAL restarted.
        let bound = (CHECKPOINT_INLINE_FRAMES as u64 + 200) * 4200;
        assert!(wal_bytes(&dir.join("t.db")) < bound, "{} bytes of WAL", wal_bytes(&dir.join("t.db")));
        assert_eq!(p.background_checkpoints(), 0);
        drop(lease);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
