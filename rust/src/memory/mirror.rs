//! The in-memory mirror of a store's file: rows, a contiguous f32 matrix,
//! per-scope statistics, and the approximate index with its live verification.

use super::*;
use super::index_file::{self, Snapshot};

/// A record in the mirror; its vector lives in `Mirror::vectors` at the same slot.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) data: RecordData,
    pub(super) categories: Vec<String>,
    /// Bit `i` set for the mirror's category number `i` (the first 64 seen),
    /// so a category filter tests a word instead of chasing strings.
    pub(super) category_mask: u64,
    pub(super) metadata: Option<Value>,
    pub(super) seq: i64,
}

impl Row {
    pub(super) fn new(mut data: RecordData, seq: i64) -> Row {
        data.vector = Embedding(None);
        let categories = parse_categories(&data.categories_str);
        let metadata = parse_json(&data.metadata_str);
        Row { data, categories, category_mask: 0, metadata, seq }
    }
}

/// What `get_scope_info` and friends need of one distinct scope.
#[derive(Debug, Default, Clone)]
pub(super) struct ScopeStats {
    pub(super) count: usize,
    /// Occurrences per category (a category listed twice counts twice, as upstream's loop does).
    pub(super) categories: HashMap<String, usize>,
    /// created_at (key, text) multiset, for the oldest and newest record.
    pub(super) created: BTreeMap<(i64, String), usize>,
}

/// Upstream's `ScopeInfo`, before the Python wrapper parses the datetimes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeSummary {
    pub record_count: usize,
    pub categories: Vec<String>,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub child_scopes: Vec<String>,
}

/// An index a background thread built, or loaded from the store's folder
/// (then with the snapshot's labels it covers mapped to the graph's).
pub(super) struct ReadyIndex {
    index: AnnIndex,
    graph_label_of: Option<HashMap<usize, usize>>,
}

/// Where a background build leaves its index.
#[derive(Default)]
pub(super) struct AnnInbox {
    pub(super) ready: Mutex<Option<ReadyIndex>>,
    pub(super) building: AtomicBool,
}

#[derive(Default)]
pub(super) struct AnnState {
    pub(super) index: Option<AnnIndex>,
    /// Whether `index` was built by this process or loaded from disk.
    pub(super) loaded: bool,
    /// Replaced when the mirror is cleared, so a build of old rows lands nowhere.
    pub(super) inbox: Arc<AnnInbox>,
    /// Searches through the index so far, and how many of them were checked
    /// against exact search, with the results both found.
    pub(super) searches: u64,
    pub(super) verified: u64,
    pub(super) found: u64,
    pub(super) wanted: u64,
    /// The index missed too much on this store's data: exact search from now on.
    pub(super) disabled: bool,
}

/// The index must find this share of the exact top k on the store's own
/// queries, or the store goes back to exact search.
pub const MIN_RECALL: f64 = 0.95;
/// The first searches through an index are all checked, then one in this many.
pub(super) const CALIBRATION_SEARCHES: u64 = 32;
pub(super) const VERIFY_EVERY: u64 = 128;

impl AnnState {
    pub(super) fn verification_due(&mut self) -> bool {
        self.searches += 1;
        self.searches <= CALIBRATION_SEARCHES || self.searches % VERIFY_EVERY == 0
    }

    pub(super) fn record_verification(&mut self, found: usize, wanted: usize) {
        self.verified += 1;
        self.found += found as u64;
        self.wanted += wanted as u64;
        if self.verified >= CALIBRATION_SEARCHES && self.recall().is_some_and(|r| r < MIN_RECALL) {
            self.disabled = true;
            self.index = None;
        }
    }

    pub(super) fn recall(&self) -> Option<f64> {
        (self.wanted > 0).then(|| self.found as f64 / self.wanted as f64)
    }
}

/// What the approximate index is doing, for status and the bench.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStatus {
    /// "off" (store below the threshold), "building", "ready" or "disabled".
    pub state: &'static str,
    /// For a ready index: "built" (by this process) or "loaded" (saved by an earlier one).
    pub source: Option<&'static str>,
    /// Recall@k measured against exact search on this store's queries.
    pub measured_recall: Option<f64>,
    pub verified_searches: u64,
}

#[derive(Default)]
pub(super) struct Mirror {
    pub(super) dim: usize,
    pub(super) rows: Vec<Row>,
    pub(super) vectors: Vec<f32>,
    /// Half-precision copies of `vectors` and their error bounds, per slot.
    pub(super) halves: Vec<u16>,
    pub(super) half_errors: Vec<f32>,
    /// Per slot, a label that never changes while the row stays (slots move
    /// on removal); the approximate index refers to rows by label.
    pub(super) labels: Vec<usize>,
    pub(super) slot_of_label: HashMap<usize, usize>,
    pub(super) next_label: usize,
    pub(super) ann: AnnState,
    /// Every category seen, numbered in order of appearance (see `Row::category_mask`).
    pub(super) category_numbers: HashMap<String, usize>,
    pub(super) slot_of: HashMap<String, usize>,
    pub(super) scopes: BTreeMap<String, ScopeStats>,
    /// The last sequence number applied, the store's epoch (bumped by a full
    /// reset), and the data_version seen when they were read.
    pub(super) seq: i64,
    pub(super) epoch: i64,
    pub(super) data_version: i64,
}

impl Mirror {
    pub(super) fn clear(&mut self) {
        let data_version = self.data_version;
        *self = Mirror { data_version, ..Mirror::default() };
    }

    pub(super) fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dim..(slot + 1) * self.dim]
    }

    pub(super) fn account(&mut self, row: &Row, add: bool) {
        let stats = self.scopes.entry(row.data.scope.clone()).or_default();
        let created = (row.data.created_key, row.data.created_at.clone());
        if add {
            stats.count += 1;
            for c in &row.categories {
                *stats.categories.entry(c.clone()).or_default() += 1;
            }
            *stats.created.entry(created).or_default() += 1;
        } else {
            stats.count -= 1;
            for c in &row.categories {
                if let Some(n) = stats.categories.get_mut(c) {
                    *n -= 1;
                    if *n == 0 {
                        stats.categories.remove(c);
                    }
                }
            }
            if let Some(n) = stats.created.get_mut(&created) {
                *n -= 1;
                if *n == 0 {
                    stats.created.remove(&created);
                }
            }
            if stats.count == 0 {
                self.scopes.remove(&row.data.scope);
            }
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slot_of.remove(id) else { return false };
        let row = self.rows.swap_remove(slot);
        self.account(&row, false);
        let last = self.rows.len();
        if slot != last {
            let (dim, moved) = (self.dim, &self.rows[slot].data.id);
            self.vectors.copy_within(last * dim..(last + 1) * dim, slot * dim);
            self.halves.copy_within(last * dim..(last + 1) * dim, slot * dim);
            self.half_errors[slot] = self.half_errors[last];
            self.slot_of.insert(moved.clone(), slot);
        }
        self.vectors.truncate(last * self.dim);
        self.halves.truncate(last * self.dim);
        self.half_errors.truncate(last);
        self.slot_of_label.remove(&self.labels.swap_remove(slot));
        if slot != last {
            self.slot_of_label.insert(self.labels[slot], slot);
        }
        true
    }

    /// Insert or replace; `vector` must have the mirror's dimension.
    pub(super) fn upsert(&mut self, mut row: Row, vector: &[f32]) {
        row.category_mask = 0;
        for category in &row.categories {
            let next = self.category_numbers.len();
            let number = *self.category_numbers.entry(category.clone()).or_insert(next);
            if number < 64 {
                row.category_mask |= 1 << number;
            }
        }
        self.remove(&row.data.id);
        self.account(&row, true);
        self.slot_of.insert(row.data.id.clone(), self.rows.len());
        self.rows.push(row);
        self.vectors.extend_from_slice(vector);
        let half = to_half(vector);
        self.halves.extend_from_slice(&half.bits);
        self.half_errors.push(half.error);
        self.slot_of_label.insert(self.next_label, self.labels.len());
        self.labels.push(self.next_label);
        self.next_label += 1;
    }

    /// Take an index a background thread has finished.
    pub(super) fn poll_index(&mut self) {
        let ready = locked(&self.ann.inbox.ready).take();
        if let Some(ready) = ready {
            self.install(ready);
        }
    }

    fn install(&mut self, ready: ReadyIndex) {
        if self.ann.disabled {
            return;
        }
        if let Some(graph_label_of) = ready.graph_label_of {
            if self.ann.index.is_some() {
                return; // loaded for a mirror without an index; it has one now
            }
            self.adopt_graph_labels(&graph_label_of, ready.index.label_limit);
            self.ann.loaded = true;
        } else {
            self.ann.loaded = false;
        }
        self.ann.index = Some(ready.index);
    }

    /// Relabel the rows for a graph read from disk: a row the graph covers
    /// takes the graph's label for it; every other row (new, changed, or
    /// written after the snapshot) a label past the graph's, as a row written
    /// after a build has. Only while no index refers to the old labels.
    fn adopt_graph_labels(&mut self, graph_label_of: &HashMap<usize, usize>, graph_label_limit: usize) {
        let mut next = graph_label_limit;
        self.slot_of_label.clear();
        for (slot, label) in self.labels.iter_mut().enumerate() {
            *label = graph_label_of.get(label).copied().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            self.slot_of_label.insert(*label, slot);
        }
        self.next_label = next;
        // A build still running was snapshotted under the old labels: its index must land nowhere.
        self.ann.inbox = Arc::default();
    }

    fn snapshot(&self, with_ids: bool) -> Snapshot {
        Snapshot {
            vectors: self.vectors.clone(),
            dim: self.dim,
            labels: self.labels.clone(),
            ids: if with_ids { self.rows.iter().map(|r| r.data.id.clone()).collect() } else { Vec::new() },
            label_limit: self.next_label,
        }
    }

    /// Make the approximate index over the current rows on a background
    /// thread (searches stay exact until it is ready), unless one is running:
    /// load the one saved in `saved_in` when this mirror has none yet, else
    /// build one and save it there.
    pub(super) fn start_index_build(&mut self, saved_in: Option<&Path>) {
        if self.ann.inbox.building.swap(true, AtomicOrdering::AcqRel) {
            return;
        }
        let snapshot = self.snapshot(saved_in.is_some());
        let load_first = self.ann.index.is_none();
        let saved_in = saved_in.map(Path::to_path_buf);
        let inbox = Arc::clone(&self.ann.inbox);
        let spawned = std::thread::Builder::new().name("crewai-rust-memory-index".into()).spawn(move || {
            // A failed build leaves search exact; the next large search retries.
            if let Ok(ready) = std::panic::catch_unwind(|| make_index(&snapshot, saved_in.as_deref(), load_first)) {
                *locked(&inbox.ready) = Some(ready);
            }
            inbox.building.store(false, AtomicOrdering::Release);
        });
        if spawned.is_err() {
            self.ann.inbox.building.store(false, AtomicOrdering::Release);
        }
    }

    /// Make the approximate index now, on this thread (loaded or built, as above).
    pub(super) fn build_index_now(&mut self, saved_in: Option<&Path>) {
        let ready = make_index(&self.snapshot(saved_in.is_some()), saved_in, self.ann.index.is_none());
        self.ann.index = None;
        self.install(ready);
    }

    /// The slots to measure exactly for an unfiltered search through the
    /// approximate index: its candidates plus every row written since it was
    /// built. None while no index is ready (a build is started).
    pub(super) fn approximate_slots(&mut self, query: &[f32], keep: usize, saved_in: Option<&Path>) -> Option<Vec<usize>> {
        if self.ann.disabled {
            return None;
        }
        self.poll_index();
        let Some(index) = self.ann.index.as_ref() else {
            self.start_index_build(saved_in);
            return None;
        };
        let fresh: Vec<usize> = (0..self.rows.len()).filter(|&slot| self.labels[slot] >= index.label_limit).collect();
        let indexed_alive = self.rows.len() - fresh.len();
        let stale = ann::is_stale(fresh.len(), indexed_alive, index.size);
        let found = index.search(query, keep, indexed_alive == index.size, &|label| self.slot_of_label.contains_key(&label));
        let mut slots: Vec<usize> = found.into_iter().filter_map(|label| self.slot_of_label.get(&label).copied()).collect();
        slots.extend(fresh);
        if stale {
            self.start_index_build(saved_in);
        }
        Some(slots)
    }

    pub(super) fn half(&self, slot: usize) -> &[u16] {
        &self.halves[slot * self.dim..(slot + 1) * self.dim]
    }
}

/// The index for `snapshot`: the one saved in `saved_in` when `load_first`
/// and it still covers the snapshot well enough, else a new build (saved there).
fn make_index(snapshot: &Snapshot, saved_in: Option<&Path>, load_first: bool) -> ReadyIndex {
    if let Some(loaded) = saved_in.filter(|_| load_first).and_then(|dir| index_file::load(dir, snapshot)) {
        let covered = loaded.graph_label_of.len();
        if !ann::is_stale(snapshot.labels.len() - covered, covered, loaded.index.size) {
            return ReadyIndex { index: loaded.index, graph_label_of: Some(loaded.graph_label_of) };
        }
    }
    let index = AnnIndex::build(&snapshot.vectors, snapshot.dim, &snapshot.labels, snapshot.label_limit);
    if let Some(dir) = saved_in {
        // The saved index is a cache: failing to save costs the next process a build, nothing else.
        let _ = index_file::save(dir, &index, snapshot);
    }
    ReadyIndex { index, graph_label_of: None }
}
