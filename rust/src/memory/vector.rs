//! Vector kernels shared by the memory component.

/// Cosine similarity with upstream's edge cases (`EncodingFlow._cosine_similarity`):
/// 0.0 when the lengths differ, a vector is empty, or either norm is zero.
pub fn cosine_similarity(a: &[f64], b: &[f64]) -> f64 {
    cosine_with_norms(a, b, norm(a), norm(b))
}

/// [`cosine_similarity`] given both norms (a batch computes each once).
fn cosine_with_norms(a: &[f64], b: &[f64], norm_a: f64, norm_b: f64) -> f64 {
    if a.len() != b.len() || a.is_empty() || norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot(a, b) / (norm_a * norm_b)
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
            if cosine_with_norms(&vectors[i], &vectors[j], norms[i], norms[j]) >= threshold {
                dropped[j] = true;
                break;
            }
        }
    }
    dropped
}

/// The squared L2 distance LanceDB ranks by, summed in f32 lanes. This is the
/// distance memory search reports; every faster path must agree with it.
#[inline]
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

/// Vectors as they are stored and cross to Python: little-endian f32 bytes.
pub fn f32_le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`f32_le_bytes`]; None when the length is not a whole number of f32.
pub fn f32_from_le_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    (bytes.len() % 4 == 0).then(|| bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Half-precision copies of stored vectors, for a first search pass that reads
/// half the memory (the scan is bound by memory bandwidth, not arithmetic).
pub struct HalfVector {
    pub bits: Vec<u16>,
    /// `|x - f32(f16(x))|`, rounded up: how far the copy's distances can be
    /// from the exact ones (triangle inequality). Infinite when a component
    /// overflows f16, so the row is always re-checked exactly.
    pub error: f32,
}

pub fn to_half(vector: &[f32]) -> HalfVector {
    let mut bits = Vec::with_capacity(vector.len());
    let mut error = 0f64;
    for &x in vector {
        let h = half::f16::from_f32(x);
        let back = h.to_f32();
        if !back.is_finite() {
            error = f64::INFINITY;
        } else {
            let d = (x - back) as f64;
            error += d * d;
        }
        bits.push(h.to_bits());
    }
    let error = error.sqrt();
    HalfVector { bits, error: if error.is_finite() { (error * (1.0 + 1e-6)) as f32 + f32::MIN_POSITIVE } else { f32::INFINITY } }
}

/// Squared L2 between an f32 query and a half-precision vector, or None when
/// the CPU lacks AVX2/FMA/F16C (then callers scan the f32 vectors directly).
pub fn half_squared_l2_kernel() -> Option<fn(&[f32], &[u16]) -> f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Some(half_squared_l2_x86);
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn half_squared_l2_x86(query: &[f32], half: &[u16]) -> f32 {
    assert_eq!(query.len(), half.len(), "query and stored vector dimensions differ");
    // SAFETY: only handed out by `half_squared_l2_kernel` after the CPU
    // features were detected; the loads stay within the equal-length slices.
    unsafe { half_squared_l2_avx2(query, half) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_squared_l2_avx2(query: &[f32], half: &[u16]) -> f32 {
    use std::arch::x86_64::*;
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let whole = query.len() / 16 * 16;
    let mut i = 0;
    while i < whole {
        let x0 = _mm256_cvtph_ps(_mm_loadu_si128(half.as_ptr().add(i) as *const __m128i));
        let x1 = _mm256_cvtph_ps(_mm_loadu_si128(half.as_ptr().add(i + 8) as *const __m128i));
        let d0 = _mm256_sub_ps(_mm256_loadu_ps(query.as_ptr().add(i)), x0);
        let d1 = _mm256_sub_ps(_mm256_loadu_ps(query.as_ptr().add(i + 8)), x1);
        acc0 = _mm256_fmadd_ps(d0, d0, acc0);
        acc1 = _mm256_fmadd_ps(d1, d1, acc1);
        i += 16;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc0, acc1));
    let mut sum: f32 = lanes.iter().sum();
    while i < query.len() {
        let d = query[i] - half::f16::from_bits(half[i]).to_f32();
        sum += d * d;
        i += 1;
    }
    sum
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
    fn half_distances_stay_within_the_recorded_error() {
        let Some(kernel) = half_squared_l2_kernel() else { return };
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32) / (1u64 << 31) as f32 - 0.5
        };
        for dim in [1usize, 15, 16, 17, 384, 1536] {
            let q: Vec<f32> = (0..dim).map(|_| next()).collect();
            let x: Vec<f32> = (0..dim).map(|_| next() * 3.0).collect();
            let h = to_half(&x);
            let exact = squared_l2(&q, &x).sqrt();
            let approx = kernel(&q, &h.bits).sqrt();
            assert!((exact - approx).abs() <= h.error + 1e-4 * exact + 1e-6, "dim {dim}: {exact} vs {approx} (error {})", h.error);
        }
        assert!(to_half(&[1e6]).error.is_infinite());
    }

    #[test]
    fn empty_batch() {
        assert!(batch_dedup_flags(&[], 0.9).is_empty());
    }
}
