//! The approximate index of large memory stores: an HNSW graph (`hnsw_rs`)
//! over a snapshot of the stored vectors, ranked by the same squared L2
//! distance as exact search. The store measures the candidates it returns
//! exactly, so scores stay exact; only which rows come back is approximate.

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use super::vector::squared_l2;

/// Graph degree and build effort: recall@10 above 0.95 on the bench's data;
/// the build costs about 10 s of two cores per 50,000 rows of 384 dimensions.
const MAX_CONNECTIONS: usize = 16;
const EF_CONSTRUCTION: usize = 100;
const MAX_LAYERS: usize = 16;

/// How wide a search looks, relative to how many results it wants.
pub fn search_effort(keep: usize) -> usize {
    (keep * 16).max(200)
}

/// Whether an index over `size` rows should be rebuilt, with `fresh` rows
/// written since it was built and `indexed_alive` of its rows still current:
/// once a tenth of the rows are new or a fifth of the graph is dead.
pub fn is_stale(fresh: usize, indexed_alive: usize, size: usize) -> bool {
    fresh * 10 > size || indexed_alive * 5 < size * 4
}

#[derive(Clone, Copy, Default)]
pub struct SquaredL2;

impl Distance<f32> for SquaredL2 {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        squared_l2(a, b)
    }
}

pub struct AnnIndex {
    graph: Hnsw<'static, f32, SquaredL2>,
    /// Every label below this one was in the snapshot the graph was built
    /// from; rows labelled since are not in it.
    pub label_limit: usize,
    pub size: usize,
}

impl AnnIndex {
    /// Build over `labels[i]`'s vector `vectors[i * dim..(i + 1) * dim]`,
    /// inserting on the global rayon pool.
    pub fn build(vectors: &[f32], dim: usize, labels: &[usize], label_limit: usize) -> AnnIndex {
        let graph = Hnsw::new(MAX_CONNECTIONS, labels.len().max(1), MAX_LAYERS, EF_CONSTRUCTION, SquaredL2);
        let points: Vec<(&[f32], usize)> =
            labels.iter().enumerate().map(|(i, &label)| (&vectors[i * dim..(i + 1) * dim], label)).collect();
        graph.parallel_insert_slice(&points);
        AnnIndex { graph, label_limit, size: labels.len() }
    }

    /// An index over a graph read from disk (`index_file`).
    pub fn from_graph(graph: Hnsw<'static, f32, SquaredL2>, label_limit: usize, size: usize) -> AnnIndex {
        AnnIndex { graph, label_limit, size }
    }

    pub fn graph(&self) -> &Hnsw<'static, f32, SquaredL2> {
        &self.graph
    }

    /// Labels of (about) the `keep` nearest rows that `alive` admits; with
    /// `all_alive` the graph is searched without the (slower) filter.
    pub fn search(&self, query: &[f32], keep: usize, all_alive: bool, alive: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let filter = |label: &usize| alive(*label);
        let found = if all_alive {
            self.graph.search(query, keep, search_effort(keep))
        } else {
            self.graph.search_filter(query, keep, search_effort(keep), Some(&filter))
        };
        found.into_iter().map(|n| n.d_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_of_clustered_points() {
        let dim = 32;
        let mut seed = 3u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32) / (1u64 << 31) as f32 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| next() * 10.0).collect()).collect();
        let n = 3000;
        let mut vectors = Vec::with_capacity(n * dim);
        for i in 0..n {
            vectors.extend(centres[i % 20].iter().map(|c| c + next()));
        }
        let labels: Vec<usize> = (0..n).collect();
        let index = AnnIndex::build(&vectors, dim, &labels, n);
        let mut hits = 0;
        for q in 0..50 {
            let query: Vec<f32> = centres[q % 20].iter().map(|c| c + next()).collect();
            let mut exact: Vec<(f32, usize)> =
                (0..n).map(|i| (squared_l2(&query, &vectors[i * dim..(i + 1) * dim]), i)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<usize> = exact[..10].iter().map(|e| e.1).collect();
            let found = index.search(&query, 10, true, &|_| true);
            hits += found.iter().filter(|l| truth.contains(l)).count();
        }
        assert!(hits as f64 / 500.0 >= 0.95, "recall@10 {}", hits as f64 / 500.0);
        // Dead labels never come back.
        let found = index.search(&centres[0], 10, false, &|label| label % 2 == 0);
        assert!(!found.is_empty() && found.iter().all(|l| l % 2 == 0));
    }
}
