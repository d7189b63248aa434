//! k-means with k-means++ seeding (Lloyd iterations), seeded and
//! deterministic. Written here rather than pulled in: it is a few dozen lines
//! and keeps the evaluation crate free of a second ndarray version.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn distance2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index of the nearest centre.
pub fn nearest(centres: &[Vec<f64>], point: &[f64]) -> usize {
    centres
        .iter()
        .enumerate()
        .map(|(i, c)| (i, distance2(c, point)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .expect("at least one centre")
}

/// Cluster `points` into at most `k` centres.
pub fn kmeans(points: &[Vec<f64>], k: usize, iterations: usize, seed: u64) -> Vec<Vec<f64>> {
    assert!(!points.is_empty() && k > 0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // k-means++: each new centre drawn with probability proportional to its squared distance.
    let mut centres = vec![points[rng.random_range(0..points.len())].clone()];
    let mut best: Vec<f64> = points.iter().map(|p| distance2(p, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = best.iter().sum();
        if total <= 0.0 {
            break; // fewer distinct points than k
        }
        let mut target = rng.random::<f64>() * total;
        let chosen = best.iter().position(|d| {
            target -= d;
            target < 0.0
        });
        let chosen = chosen.unwrap_or(points.len() - 1);
        centres.push(points[chosen].clone());
        let newest = centres.last().expect("just pushed");
        for (b, p) in best.iter_mut().zip(points) {
            *b = b.min(distance2(p, newest));
        }
    }
    let dim = points[0].len();
    for _ in 0..iterations {
        let mut sums = vec![vec![0.0; dim]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for p in points {
            let c = nearest(&centres, p);
            counts[c] += 1;
            sums[c].iter_mut().zip(p).for_each(|(s, x)| *s += x);
        }
        let mut moved = false;
        for (c, (sum, count)) in sums.into_iter().zip(counts).enumerate() {
            if count == 0 {
                continue; // keep an empty centre where it is
            }
            let updated: Vec<f64> = sum.into_iter().map(|s| s / count as f64).collect();
            moved |= distance2(&updated, &centres[c]) > 1e-18;
            centres[c] = updated;
        }
        if !moved {
            break;
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_two_obvious_groups() {
        let mut points = Vec::new();
        for i in 0..20 {
            points.push(vec![0.0 + i as f64 * 0.01, 0.0]);
            points.push(vec![10.0 + i as f64 * 0.01, 5.0]);
        }
        let centres = kmeans(&points, 2, 50, 1);
        let mut xs: Vec<f64> = centres.iter().map(|c| c[0]).collect();
        xs.sort_by(f64::total_cmp);
        assert!((xs[0] - 0.095).abs() < 1e-9 && (xs[1] - 10.095).abs() < 1e-9, "{centres:?}");
        assert_ne!(nearest(&centres, &[0.0, 0.0]), nearest(&centres, &[10.0, 5.0]));
    }

    #[test]
    fn is_deterministic_for_a_seed_and_copes_with_few_distinct_points() {
        let points: Vec<Vec<f64>> = (0..30).map(|i| vec![(i % 3) as f64]).collect();
        assert_eq!(kmeans(&points, 3, 20, 7), kmeans(&points, 3, 20, 7));
        assert_eq!(kmeans(&points, 10, 20, 7).len(), 3);
    }
}
