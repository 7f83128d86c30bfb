//! Vector kernels shared by the memory component.

/// Cosine similarity with upstream's edge cases (`EncodingFlow._cosine_similarity`):
/// 0.0 when the lengths differ, a vector is empty, or either norm is zero.
pub fn cosine_similarity(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

// Sums run left to right like Python's `sum`, so scores match upstream's to
// the last bit and a pair at exactly the threshold is decided the same way.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0, |acc, (x, y)| acc + x * y)
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Which items of a batch are near-duplicates of an earlier kept item.
///
/// Same rule as upstream's `EncodingFlow.intra_batch_dedup`: item `j` is dropped
/// when some earlier item `i` that is not dropped and has an embedding scores
/// `>= threshold`; items with an empty embedding are never dropped nor compared.
pub fn batch_dedup_flags(vectors: &[Vec<f64>], threshold: f64) -> Vec<bool> {
    let norms: Vec<f64> = vectors.iter().map(|v| norm(v)).collect();
    let mut dropped = vec![false; vectors.len()];
    for j in 1..vectors.len() {
        if vectors[j].is_empty() {
            continue;
        }
        for i in 0..j {
            if dropped[i] || vectors[i].is_empty() {
                continue;
            }
            let (a, b) = (&vectors[i], &vectors[j]);
            let sim = if a.len() != b.len() || norms[i] == 0.0 || norms[j] == 0.0 {
                0.0
            } else {
                dot(a, b) / (norms[i] * norms[j])
            };
            if sim >= threshold {
                dropped[j] = true;
                break;
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_matches_upstream_edge_cases() {
        assert_eq!(cosine_similarity(&[], &[]), 0.0);
        assert_eq!(cosine_similarity(&[1.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
        assert!((cosine_similarity(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!((cosine_similarity(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-12);
        assert!((cosine_similarity(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn dedup_drops_later_duplicates_only() {
        let v = vec![
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![2.0, 0.0],  // duplicate of 0
            vec![],          // no embedding: kept, never compared
            vec![0.0, 3.0],  // duplicate of 1
        ];
        assert_eq!(batch_dedup_flags(&v, 0.98), vec![false, false, true, false, true]);
    }

    #[test]
    fn dedup_ignores_dropped_items_as_anchors() {
        // 2 is close to 1 only; 1 is dropped as a duplicate of 0 first, so 2
        // is compared with 0 alone and kept.
        let v = vec![vec![1.0, 0.0], vec![1.0, 0.1], vec![1.0, 0.25]];
        let sims = (cosine_similarity(&v[0], &v[1]), cosine_similarity(&v[1], &v[2]),
                    cosine_similarity(&v[0], &v[2]));
        assert!(sims.0 >= 0.98 && sims.1 >= 0.98 && sims.2 < 0.98);
        assert_eq!(batch_dedup_flags(&v, 0.98), vec![false, true, false]);
    }

    #[test]
    fn empty_batch() {
        assert!(batch_dedup_flags(&[], 0.9).is_empty());
    }
}
