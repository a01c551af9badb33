//! Deserved shares of the queues: Volcano's `proportion` rule, computed exactly.
//!
//! Per resource dimension independently, each queue `i` with weight `w_i` deserves
//! `clamp(w_i * λ, lo_i, hi_i)` where `lo_i = min(guarantee, demand)`,
//! `hi_i = min(effective capability, demand)` and the water level `λ` is chosen so that the
//! deserved shares add up to the cluster's total (or every queue is at `hi`). So guarantees
//! come first, what is left is divided by weight, no queue deserves more than it asks for or
//! may hold, and what a queue does not ask for flows to the others in proportion to their weights.

use crate::{Dimension, Resources};

/// One queue's bounds for the share computation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub weight: u32,
    /// Lower bound (the part of the guarantee the queue asks for).
    pub lo: Resources,
    /// Upper bound (demand capped by effective capability).
    pub hi: Resources,
}

/// The deserved share of each claim, in claim order.
pub(crate) fn deserved(total: Resources, claims: &[Claim]) -> Vec<Resources> {
    let mut out = vec![Resources::ZERO; claims.len()];
    for dim in Dimension::ALL {
        let bounds: Vec<(f64, u64, u64)> = claims
            .iter()
            .map(|c| {
                let hi = c.hi.get(dim);
                (f64::from(c.weight.max(1)), c.lo.get(dim).min(hi), hi)
            })
            .collect();
        let shares = water_fill(total.get(dim), &bounds);
        for (o, v) in out.iter_mut().zip(shares) {
            match dim {
                Dimension::Gpu => o.gpus = v,
                Dimension::Cpu => o.cpu_millis = v,
                Dimension::Memory => o.memory_bytes = v,
            }
        }
    }
    out
}

/// Weighted water-filling of `total` over `(weight, lo, hi)` bounds (with `lo <= hi`).
fn water_fill(total: u64, bounds: &[(f64, u64, u64)]) -> Vec<u64> {
    let sum_lo: u128 = bounds.iter().map(|b| u128::from(b.1)).sum();
    let sum_hi: u128 = bounds.iter().map(|b| u128::from(b.2)).sum();
    if sum_lo >= u128::from(total) {
        // Guarantees alone use everything (or more): each queue keeps its guarantee.
        return bounds.iter().map(|b| b.1).collect();
    }
    if sum_hi <= u128::from(total) {
        return bounds.iter().map(|b| b.2).collect();
    }
    let level = |lambda: f64| -> f64 {
        bounds
            .iter()
            .map(|&(w, lo, hi)| (w * lambda).clamp(lo as f64, hi as f64))
            .sum()
    };
    let mut points: Vec<f64> = bounds
        .iter()
        .flat_map(|&(w, lo, hi)| [lo as f64 / w, hi as f64 / w])
        .collect();
    points.sort_by(f64::total_cmp);
    points.dedup();
    let target = total as f64;
    let mut prev = points.first().copied().unwrap_or(0.0);
    let mut lambda = prev;
    for &p in &points {
        let fp = level(p);
        if fp >= target {
            let fa = level(prev);
            lambda = if fp > fa {
                prev + (target - fa) * (p - prev) / (fp - fa)
            } else {
                p
            };
            break;
        }
        prev = p;
        lambda = p;
    }
    bounds
        .iter()
        .map(|&(w, lo, hi)| {
            let v = (w * lambda).clamp(lo as f64, hi as f64).floor();
            // `as` saturates; the clamp keeps v within [lo, hi] anyway.
            (v as u64).clamp(lo, hi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(lo: u64, hi: u64, weight: u32) -> Claim {
        Claim {
            weight,
            lo: Resources::new(lo, 0, 0),
            hi: Resources::new(hi, 0, 0),
        }
    }

    fn cpus(total: u64, claims: &[Claim]) -> Vec<u64> {
        deserved(Resources::new(total, 0, 0), claims)
            .into_iter()
            .map(|r| r.cpu_millis)
            .collect()
    }

    #[test]
    fn divides_by_weight_when_everyone_wants_everything() {
        assert_eq!(cpus(600, &[cpu(0, 600, 1), cpu(0, 600, 2)]), vec![200, 400]);
    }

    #[test]
    fn what_one_queue_does_not_ask_for_flows_to_the_others() {
        // The first queue asks for 100 only; the other two split the rest 1:3.
        assert_eq!(
            cpus(900, &[cpu(0, 100, 5), cpu(0, 900, 1), cpu(0, 900, 3)]),
            vec![100, 200, 600]
        );
    }

    #[test]
    fn guarantee_comes_first() {
        // Weight alone would give the first queue 100; its guarantee is 500.
        assert_eq!(
            cpus(1000, &[cpu(500, 1000, 1), cpu(0, 1000, 9)]),
            vec![500, 500]
        );
    }

    #[test]
    fn everyone_gets_their_demand_when_it_fits() {
        assert_eq!(cpus(1000, &[cpu(0, 10, 1), cpu(0, 20, 1)]), vec![10, 20]);
    }

    #[test]
    fn shares_never_add_up_to_more_than_the_total() {
        let claims = [cpu(0, 1000, 3), cpu(0, 1000, 3), cpu(0, 1000, 3)];
        let d = cpus(1000, &claims);
        assert!(d.iter().sum::<u64>() <= 1000);
        assert!(d.iter().all(|&v| (332..=334).contains(&v)), "{d:?}");
    }
}
