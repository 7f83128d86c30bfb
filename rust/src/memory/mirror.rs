//! The in-memory mirror of a store's file: rows, a contiguous f32 matrix,
//! per-scope statistics, and the approximate index with its live verification.

use super::*;

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

/// Where a background build leaves its index.
#[derive(Default)]
pub(super) struct AnnInbox {
    pub(super) ready: Mutex<Option<AnnIndex>>,
    pub(super) building: AtomicBool,
}

#[derive(Default)]
pub(super) struct AnnState {
    pub(super) index: Option<AnnIndex>,
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

    /// Take an index a background build has finished.
    pub(super) fn poll_index(&mut self) {
        if let Some(index) = locked(&self.ann.inbox.ready).take() {
            if !self.ann.disabled {
                self.ann.index = Some(index);
            }
        }
    }

    /// Build the approximate index over the current rows on a background
    /// thread (searches stay exact until it is ready), unless one is running.
    pub(super) fn start_index_build(&mut self) {
        if self.ann.inbox.building.swap(true, AtomicOrdering::AcqRel) {
            return;
        }
        let (vectors, labels, limit, dim) = (self.vectors.clone(), self.labels.clone(), self.next_label, self.dim);
        let inbox = Arc::clone(&self.ann.inbox);
        let spawned = std::thread::Builder::new().name("crewai-rust-memory-index".into()).spawn(move || {
            // A failed build leaves search exact; the next large search retries.
            if let Ok(index) = std::panic::catch_unwind(|| AnnIndex::build(&vectors, dim, &labels, limit)) {
                *locked(&inbox.ready) = Some(index);
            }
            inbox.building.store(false, AtomicOrdering::Release);
        });
        if spawned.is_err() {
            self.ann.inbox.building.store(false, AtomicOrdering::Release);
        }
    }

    /// Build the approximate index now, on this thread.
    pub(super) fn build_index_now(&mut self) {
        self.ann.index = Some(AnnIndex::build(&self.vectors, self.dim, &self.labels, self.next_label));
    }

    /// The slots to measure exactly for an unfiltered search through the
    /// approximate index: its candidates plus every row written since it was
    /// built. None while no index is ready (a build is started).
    pub(super) fn approximate_slots(&mut self, query: &[f32], keep: usize) -> Option<Vec<usize>> {
        if self.ann.disabled {
            return None;
        }
        self.poll_index();
        let Some(index) = self.ann.index.as_ref() else {
            self.start_index_build();
            return None;
        };
        let fresh: Vec<usize> = (0..self.rows.len()).filter(|&slot| self.labels[slot] >= index.label_limit).collect();
        let indexed_alive = self.rows.len() - fresh.len();
        // Rebuild once a tenth of the rows are new or a fifth of the graph is dead.
        let stale = fresh.len() * 10 > index.size || indexed_alive * 5 < index.size * 4;
        let found = index.search(query, keep, indexed_alive == index.size, &|label| self.slot_of_label.contains_key(&label));
        let mut slots: Vec<usize> = found.into_iter().filter_map(|label| self.slot_of_label.get(&label).copied()).collect();
        slots.extend(fresh);
        if stale {
            self.start_index_build();
        }
        Some(slots)
    }

    pub(super) fn half(&self, slot: usize) -> &[u16] {
        &self.halves[slot * self.dim..(slot + 1) * self.dim]
    }
}
