//! The approximate index saved beside its store (`<store file>-ann/`), so a
//! new process loads the graph instead of building it again: the build takes
//! minutes of both cores at 200,000 rows (see the README).
//!
//! The folder holds hnsw_rs's own dump of one graph (`<name>.hnsw.graph`,
//! `<name>.hnsw.data`, under a name never reused) and `index.rows`, written
//! last and renamed into place: which dump is current, the digests of its two
//! files, the vector dimension, and for every label in the graph the record
//! id and a digest of the vector it was built from. A loading store keeps a
//! label only for a row that still has that id and that vector; every other
//! row is treated as written after the build (measured exactly, and counted
//! toward the next rebuild). Anything unexpected (another format, another
//! dimension, a digest that differs, a short file) means: build anew.
//!
//! The index is a cache of the store: losing it costs time, never a record.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;

use super::ann::{AnnIndex, SquaredL2};

/// Our layout of `index.rows` and the dump layout of the hnsw_rs we link
/// (0.3.x); either changing makes older files unreadable, so both are checked.
const MAGIC: &[u8; 8] = b"crewANN\x01";
const HNSW_DUMP_FORMAT: &[u8; 8] = b"hnsw_0.3";
const ROWS_FILE: &str = "index.rows";
/// Leftovers of a writer that died mid-dump are removed once this old.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The rows a graph was built from: `labels[i]` is the label of record
/// `ids[i]`, whose vector is `vectors[i * dim..(i + 1) * dim]`.
pub struct Snapshot {
    pub vectors: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<usize>,
    pub ids: Vec<String>,
    /// The mirror's next label when the snapshot was taken.
    pub label_limit: usize,
}

/// An index read from disk, and for the snapshot's rows it still covers,
/// snapshot label -> graph label.
pub struct LoadedIndex {
    pub index: AnnIndex,
    pub graph_label_of: HashMap<usize, usize>,
}

/// Where a store at `store_path` keeps its index; None for an in-memory database.
pub fn index_dir(store_path: &Path) -> Option<PathBuf> {
    let text = store_path.to_str().unwrap_or("");
    if text.is_empty() || text.starts_with(':') || text.starts_with("file:") {
        return None;
    }
    let mut dir = store_path.as_os_str().to_owned();
    dir.push("-ann");
    Some(PathBuf::from(dir))
}

/// Forget the saved index (the store was emptied).
pub fn remove(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// A 64-bit digest (multiply-rotate over 8-byte words): catches torn and
/// corrupted files, and tells whether a row's vector changed. Not cryptographic.
struct Digest(u64);

impl Digest {
    const PRIME: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new() -> Digest {
        Digest(0x243F_6A88_85A3_08D3)
    }

    fn word(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::PRIME).rotate_left(29);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(tail) ^ ((bytes.len() as u64) << 56));
    }

    fn finish(&self) -> u64 {
        let x = self.0 ^ (self.0 >> 31);
        x.wrapping_mul(Self::PRIME) ^ (x >> 29)
    }
}

pub fn vector_digest(vector: &[f32]) -> u64 {
    let mut d = Digest::new();
    for pair in vector.chunks(2) {
        let high = pair.get(1).map_or(0, |x| x.to_bits() as u64) << 32;
        d.word(pair[0].to_bits() as u64 | high);
    }
    d.word(vector.len() as u64);
    d.finish()
}

/// (length, digest) of a file, read in 1 MiB blocks.
fn file_digest(path: &Path) -> io::Result<(u64, u64)> {
    let mut file = fs::File::open(path)?;
    let mut block = vec![0u8; 1 << 20];
    let (mut digest, mut length) = (Digest::new(), 0u64);
    loop {
        let mut filled = 0;
        while filled < block.len() {
            match file.read(&mut block[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        digest.bytes(&block[..filled]);
        length += filled as u64;
        if filled < block.len() {
            break;
        }
    }
    Ok((length, digest.finish()))
}

fn dump_files(dir: &Path, name: &str) -> [PathBuf; 2] {
    [dir.join(format!("{name}.hnsw.graph")), dir.join(format!("{name}.hnsw.data"))]
}

/// A name no other dump of any process has used.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("g{}-{}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The fields of `index.rows` before its entries.
struct Header {
    dump_name: String,
    dim: usize,
    label_limit: usize,
    files: [(u64, u64); 2],
}

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn text(&mut self, text: &str) {
        self.u64(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn usize(&mut self) -> Option<usize> {
        self.u64().and_then(|v| usize::try_from(v).ok())
    }

    fn text(&mut self) -> Option<String> {
        let n = self.usize()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn encode_rows(header: &Header, snapshot: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + snapshot.ids.len() * 64));
    w.0.extend_from_slice(MAGIC);
    w.0.extend_from_slice(HNSW_DUMP_FORMAT);
    w.text(&header.dump_name);
    w.u64(header.dim as u64);
    w.u64(header.label_limit as u64);
    for (length, digest) in header.files {
        w.u64(length);
        w.u64(digest);
    }
    w.u64(snapshot.ids.len() as u64);
    for (i, id) in snapshot.ids.iter().enumerate() {
        w.u64(snapshot.labels[i] as u64);
        w.u64(vector_digest(&snapshot.vectors[i * snapshot.dim..(i + 1) * snapshot.dim]));
        w.text(id);
    }
    let mut digest = Digest::new();
    digest.bytes(&w.0);
    let sum = digest.finish();
    w.u64(sum);
    w.0
}

/// (label, vector digest, id) per graph row.
type Entry = (usize, u64, String);

fn decode_rows(bytes: &[u8]) -> Option<(Header, Vec<Entry>)> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(8)?);
    let mut digest = Digest::new();
    digest.bytes(body);
    if digest.finish().to_le_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC || r.take(8)? != HNSW_DUMP_FORMAT {
        return None;
    }
    let dump_name = r.text()?;
    let (dim, label_limit) = (r.usize()?, r.usize()?);
    let mut files = [(0, 0); 2];
    for file in &mut files {
        *file = (r.u64()?, r.u64()?);
    }
    let count = r.usize()?;
    let mut entries = Vec::with_capacity(count.min(body.len() / 24));
    for _ in 0..count {
        entries.push((r.usize()?, r.u64()?, r.text()?));
    }
    (r.0.is_empty() && !dump_name.contains(['/', '\\'])).then_some((Header { dump_name, dim, label_limit, files }, entries))
}

/// Save `index`, built from `snapshot`, as the folder's current index.
/// Concurrent savers each publish whole; the last rename wins.
pub fn save(dir: &Path, index: &AnnIndex, snapshot: &Snapshot) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let name = unique_name();
    let rows_tmp = dir.join(format!("{name}.rows"));
    // Opened first: an unwritable folder fails here, before hnsw_rs (which panics on it).
    let mut rows_file = fs::File::create(&rows_tmp)?;
    let files = dump_files(dir, &name);
    let written = (|| {
        index.graph().file_dump(dir, &name).map_err(io::Error::other)?;
        let header = Header {
            dump_name: name.clone(),
            dim: snapshot.dim,
            label_limit: snapshot.label_limit,
            files: [file_digest(&files[0])?, file_digest(&files[1])?],
        };
        rows_file.write_all(&encode_rows(&header, snapshot))?;
        rows_file.sync_all()
    })();
    let previous = fs::read(dir.join(ROWS_FILE)).ok().and_then(|b| decode_rows(&b)).map(|(h, _)| h.dump_name);
    let published = written.and_then(|()| fs::rename(&rows_tmp, dir.join(ROWS_FILE)));
    if published.is_err() {
        let _ = fs::remove_file(&rows_tmp);
        for file in &files {
            let _ = fs::remove_file(file);
        }
        return published;
    }
    if let Some(previous) = previous.filter(|p| *p != name) {
        for file in dump_files(dir, &previous) {
            let _ = fs::remove_file(file);
        }
    }
    remove_leftovers(dir, &name);
    Ok(())
}

/// Files of dumps that were never published (their writer died), once old.
fn remove_leftovers(dir: &Path, current: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if file_name == ROWS_FILE || file_name.starts_with(&format!("{current}.")) {
            continue;
        }
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|age| age > STALE_AFTER) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The folder's index, if it was built over vectors of `snapshot.dim`
/// dimensions and its files are intact; its labels matched to the snapshot's rows.
pub fn load(dir: &Path, snapshot: &Snapshot) -> Option<LoadedIndex> {
    let (header, entries) = decode_rows(&fs::read(dir.join(ROWS_FILE)).ok()?)?;
    if header.dim != snapshot.dim || entries.is_empty() {
        return None;
    }
    let files = dump_files(dir, &header.dump_name);
    for (file, expected) in files.iter().zip(header.files) {
        if file_digest(file).ok()? != expected {
            return None;
        }
    }
    // hnsw_rs ties a loaded graph's lifetime to its loader (for memory-mapped
    // data, which is not used here): the loader, a few hundred bytes, is kept
    // for the life of the process.
    let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &header.dump_name)));
    let graph = loader.load_hnsw::<f32, SquaredL2>().ok()?;
    if graph.get_nb_point() != entries.len() {
        return None;
    }
    let position: HashMap<&str, usize> = snapshot.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let dim = snapshot.dim;
    let mut graph_label_of = HashMap::with_capacity(entries.len());
    for (graph_label, digest, id) in &entries {
        if let Some(&i) = position.get(id.as_str()) {
            if vector_digest(&snapshot.vectors[i * dim..(i + 1) * dim]) == *digest {
                graph_label_of.insert(snapshot.labels[i], *graph_label);
            }
        }
    }
    let index = AnnIndex::from_graph(graph, header.label_limit, entries.len());
    Some(LoadedIndex { index, graph_label_of })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(n: usize, dim: usize) -> Snapshot {
        let vectors = (0..n * dim)
            .map(|i| {
                let x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                ((x ^ (x >> 29)) >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        Snapshot { vectors, dim, labels: (0..n).map(|i| i * 2).collect(), ids: (0..n).map(|i| format!("r{i}")).collect(), label_limit: 2 * n }
    }

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crewai-rust-index-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_saved_index_loads_with_its_labels_matched_by_id_and_vector() {
        let dir = folder("roundtrip");
        let snap = snapshot(300, 8);
        let index = AnnIndex::build(&snap.vectors, snap.dim, &snap.labels, snap.label_limit);
        save(&dir, &index, &snap).unwrap();
        // A later process: its own labels, one row gone, one row's vector changed.
        let mut later = snapshot(300, 8);
        later.labels = (0..300).map(|i| 1000 + i).collect();
        later.ids.remove(5);
        later.labels.remove(5);
        later.vectors.drain(5 * 8..6 * 8);
        later.vectors[0] += 1.0;
        let loaded = load(&dir, &later).unwrap();
        assert_eq!(loaded.index.size, 300);
        assert_eq!(loaded.index.label_limit, 600);
        assert_eq!(loaded.graph_label_of.len(), 298);
        assert_eq!(loaded.graph_label_of[&1001], 2, "r1 keeps the graph's label");
        assert!(!loaded.graph_label_of.contains_key(&1000), "r0's vector changed");
        // The graph answers with graph labels.
        let found = loaded.index.search(&snap.vectors[7 * 8..8 * 8], 1, true, &|_| true);
        assert_eq!(found, vec![14]);
        // Another dimension is not this index.
        assert!(load(&dir, &snapshot(10, 4)).is_none());
        // Saving again replaces the dump and removes the previous one's files.
        save(&dir, &index, &snap).unwrap();
        let dumps = fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".hnsw.")).count();
        assert_eq!(dumps, 2);
        remove(&dir);
        assert!(!dir.exists());
    }

    #[test]
    fn a_damaged_index_is_not_loaded() {
        let snap = snapshot(200, 8);
        let index = AnnIndex::build(&snap.vectors, snap.dim, &snap.labels, snap.label_limit);
        let damage: [(&str, fn(&Path)); 4] = [
            ("flipped-graph", |dir| flip_byte(dir, ".hnsw.graph")),
            ("flipped-data", |dir| flip_byte(dir, ".hnsw.data")),
            ("flipped-rows", |dir| flip_byte(dir, "index.rows")),
            ("short-rows", |dir| {
                let path = dir.join(ROWS_FILE);
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }),
        ];
        for (name, spoil) in damage {
            let dir = folder(name);
            save(&dir, &index, &snap).unwrap();
            assert!(load(&dir, &snap).is_some());
            spoil(&dir);
            assert!(load(&dir, &snap).is_none(), "{name}");
            remove(&dir);
        }
        assert!(load(&folder("absent"), &snap).is_none());
    }

    fn flip_byte(dir: &Path, suffix: &str) {
        let path = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(suffix)).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn in_memory_stores_keep_no_index_file() {
        assert_eq!(index_dir(Path::new(":memory:")), None);
        assert_eq!(index_dir(Path::new("/d/memories.sqlite3")), Some(PathBuf::from("/d/memories.sqlite3-ann")));
    }
}
