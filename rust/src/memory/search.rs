//! Exact nearest-neighbour kernels over the mirror's matrix: a plain scan, and
//! for large scans a half-precision first pass whose bounds keep the answer exact.

use super::*;

/// Below this many stored floats one exact pass is as fast as two.
pub(super) const HALF_PASS_MIN_FLOATS: usize = 1 << 16;

#[derive(PartialEq, Clone, Copy)]
pub(super) struct Candidate {
    pub(super) distance: f32,
    pub(super) seq: i64,
    pub(super) slot: usize,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    // Worst first, so the heap's top is the one to evict: larger distance, then newer.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.distance.total_cmp(&other.distance).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// The `keep` nearest of `slots` by the exact distance, nearest first (ties: older first).
pub(super) fn nearest_exact(m: &Mirror, query: &[f32], keep: usize, slots: impl Iterator<Item = usize>) -> Vec<Candidate> {
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(keep + 1);
    for slot in slots {
        let candidate = Candidate { distance: squared_l2(query, m.vector(slot)), seq: m.rows[slot].seq, slot };
        if heap.len() == keep {
            if candidate >= *heap.peek().expect("heap is full") {
                continue;
            }
            heap.pop();
        }
        heap.push(candidate);
    }
    heap.into_sorted_vec()
}

/// The same answer as [`nearest_exact`], reading mostly the half-precision
/// copies: a row's exact distance lies within its recorded error (plus float
/// rounding) of its half-precision distance, so only rows whose lower bound
/// can beat the `keep`-th smallest upper bound are measured exactly.
pub(super) fn nearest_two_pass(
    m: &Mirror,
    query: &[f32],
    keep: usize,
    admitted: impl Fn(usize) -> bool + Sync,
    kernel: fn(&[f32], &[u16]) -> f32,
    parts: usize,
) -> Vec<Candidate> {
    let rows = m.rows.len();
    let parts = parts.clamp(1, rows.max(1));
    let bounds_of = |range: std::ops::Range<usize>| half_bounds(m, query, keep, range, &admitted, kernel);
    let chunk = rows.div_ceil(parts);
    let mut parts_found: Vec<(Vec<(f32, usize)>, Vec<f32>)> = Vec::with_capacity(parts);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..parts)
            .map(|p| {
                let range = (p * chunk).min(rows)..((p + 1) * chunk).min(rows);
                scope.spawn(move || bounds_of(range))
            })
            .collect();
        parts_found.push(bounds_of(0..chunk.min(rows)));
        for handle in handles {
            parts_found.push(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
    });
    let mut uppers: Vec<f32> = parts_found.iter().flat_map(|(_, u)| u.iter().copied()).collect();
    uppers.sort_unstable_by(f32::total_cmp);
    let threshold = if uppers.len() >= keep { uppers[keep - 1] } else { f32::INFINITY };
    let candidates = parts_found
        .into_iter()
        .flat_map(|(bounds, _)| bounds.into_iter())
        .filter(|(lower, _)| *lower <= threshold)
        .map(|(_, slot)| slot);
    nearest_exact(m, query, keep, candidates)
}

pub(super) const SCAN_THREADS: usize = 2;
pub(super) const PARALLEL_MIN_FLOATS: usize = 1 << 22;

/// Over `range`: each admitted row's lower bound, and the `keep` smallest upper bounds.
pub(super) fn half_bounds(
    m: &Mirror,
    query: &[f32],
    keep: usize,
    range: std::ops::Range<usize>,
    admitted: &impl Fn(usize) -> bool,
    kernel: fn(&[f32], &[u16]) -> f32,
) -> (Vec<(f32, usize)>, Vec<f32>) {
    let mut bounds: Vec<(f32, usize)> = Vec::new();
    let mut uppers: BinaryHeap<OrderedUpper> = BinaryHeap::with_capacity(keep + 1);
    for slot in range {
        if !admitted(slot) {
            continue;
        }
        let approx = kernel(query, m.half(slot)).sqrt();
        let slack = m.half_errors[slot] + ROUNDING_SLACK * approx + f32::EPSILON;
        let (lower, upper) = ((approx - slack).max(0.0), approx + slack);
        bounds.push((lower, slot));
        uppers.push(OrderedUpper(upper));
        if uppers.len() > keep {
            uppers.pop();
        }
    }
    (bounds, uppers.into_iter().map(|u| u.0).collect())
}

/// Relative rounding of f32 sums over a vector, generously bounded.
pub(super) const ROUNDING_SLACK: f32 = 2e-4;

#[derive(PartialEq, PartialOrd)]
pub(super) struct OrderedUpper(f32);

impl Eq for OrderedUpper {}

impl Ord for OrderedUpper {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.total_cmp(&other.0)
    }
}
