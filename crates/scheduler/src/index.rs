//! Nodes ordered by free capacity, so that finding the best node for a replica is a range
//! query instead of a scan of every node.
//!
//! Two ordered sets: nodes without GPUs keyed by `(free CPU, free memory, node)`, nodes with
//! GPUs keyed by `(free GPUs, free CPU, free memory, node)`. The scoring is best fit
//! (bin-packing): the first key at or above the request is the node with the least free of the
//! scarce resource that still holds the replica, so nodes fill up one by one and large gangs
//! still find whole empty nodes. A GPU replica searches only the GPU set. A CPU-only replica
//! searches the CPU-only set first and falls back to GPU nodes only when no CPU-only node fits,
//! beginning with GPU nodes whose GPUs are all taken (their CPU is otherwise stranded).
//! `find_most_free` answers the opposite question (the node with the most free), for
//! `PlacementPolicy::Spread`.
//!
//! Cost: O(log n) per insert/remove; a lookup is O(log n + k) where k counts nodes skipped
//! because a second dimension (memory, or CPU on the GPU set) or a node selector did not match.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::Resources;

#[derive(Debug, Default)]
pub(crate) struct NodeIndex {
    cpu_only: BTreeSet<(u64, u64, u32)>,
    gpu: BTreeSet<(u64, u64, u64, u32)>,
    /// The free capacity each node is indexed under.
    free: Vec<Resources>,
    has_gpus: Vec<bool>,
    /// The sum of `free` over all nodes.
    total: Resources,
}

impl NodeIndex {
    /// Indexes nodes `0..n` with their GPU flag and free capacity.
    pub fn new(nodes: impl IntoIterator<Item = (bool, Resources)>) -> Self {
        let mut index = NodeIndex::default();
        for (i, (has_gpus, free)) in nodes.into_iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            index.has_gpus.push(has_gpus);
            index.free.push(free);
            index.insert(i);
        }
        index
    }

    fn insert(&mut self, i: u32) {
        let f = self.free[i as usize];
        self.total = self.total.saturating_add(f);
        if self.has_gpus[i as usize] {
            self.gpu.insert((f.gpus, f.cpu_millis, f.memory_bytes, i));
        } else {
            self.cpu_only.insert((f.cpu_millis, f.memory_bytes, i));
        }
    }

    fn remove(&mut self, i: u32) {
        let f = self.free[i as usize];
        self.total = self.total.saturating_sub(f);
        if self.has_gpus[i as usize] {
            self.gpu.remove(&(f.gpus, f.cpu_millis, f.memory_bytes, i));
        } else {
            self.cpu_only.remove(&(f.cpu_millis, f.memory_bytes, i));
        }
    }

    /// The free capacity of all nodes together.
    pub fn total(&self) -> Resources {
        self.total
    }

    /// Re-indexes node `i` under a new free capacity.
    pub fn set_free(&mut self, i: u32, free: Resources) {
        if self.free[i as usize] != free {
            self.remove(i);
            self.free[i as usize] = free;
            self.insert(i);
        }
    }

    /// The best-fit node for `request` among those `eligible` accepts (see the module docs).
    pub fn find(&self, request: Resources, eligible: impl Fn(u32) -> bool) -> Option<u32> {
        let fits_rest =
            |cpu: u64, mem: u64| cpu >= request.cpu_millis && mem >= request.memory_bytes;
        let from_gpu_set = |min_gpus: u64| {
            self.gpu
                .range((
                    Bound::Included((min_gpus, request.cpu_millis, request.memory_bytes, 0)),
                    Bound::Unbounded,
                ))
                .find(|&&(_, cpu, mem, i)| fits_rest(cpu, mem) && eligible(i))
                .map(|&(_, _, _, i)| i)
        };
        if request.gpus > 0 {
            return from_gpu_set(request.gpus);
        }
        self.cpu_only
            .range((
                Bound::Included((request.cpu_millis, request.memory_bytes, 0)),
                Bound::Unbounded,
            ))
            .find(|&&(_, mem, i)| mem >= request.memory_bytes && eligible(i))
            .map(|&(_, _, i)| i)
            .or_else(|| from_gpu_set(0))
    }

    /// The fitting node with the most free of what `request` is mostly about, among those
    /// `eligible` accepts ([`crate::PlacementPolicy::Spread`]): for a GPU replica the GPU node
    /// with the most free GPUs, for a CPU-only replica the node with the most free CPU, with
    /// or without GPUs. Ties go to the later node in name order. The CPU case scans the GPU
    /// nodes (they are not keyed by CPU first): O(log n + GPU nodes).
    pub fn find_most_free(
        &self,
        request: Resources,
        eligible: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        let fits_rest =
            |cpu: u64, mem: u64| cpu >= request.cpu_millis && mem >= request.memory_bytes;
        if request.gpus > 0 {
            return self
                .gpu
                .range((Bound::Included((request.gpus, 0, 0, 0)), Bound::Unbounded))
                .rev()
                .find(|&&(_, cpu, mem, i)| fits_rest(cpu, mem) && eligible(i))
                .map(|&(_, _, _, i)| i);
        }
        let cpu_only = self
            .cpu_only
            .range((
                Bound::Included((request.cpu_millis, request.memory_bytes, 0)),
                Bound::Unbounded,
            ))
            .rev()
            .find(|&&(_, mem, i)| mem >= request.memory_bytes && eligible(i))
            .copied();
        let gpu = self
            .gpu
            .iter()
            .filter(|&&(_, cpu, mem, i)| fits_rest(cpu, mem) && eligible(i))
            .map(|&(_, cpu, mem, i)| (cpu, mem, i))
            .max();
        cpu_only.max(gpu).map(|(_, _, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_picks_the_fullest_node_that_holds_the_request() {
        let index = NodeIndex::new([
            (false, Resources::new(4000, 100, 0)),
            (false, Resources::new(1000, 100, 0)),
            (false, Resources::new(2000, 100, 0)),
        ]);
        assert_eq!(index.find(Resources::new(1500, 10, 0), |_| true), Some(2));
        assert_eq!(index.find(Resources::new(500, 10, 0), |_| true), Some(1));
        assert_eq!(index.find(Resources::new(500, 1000, 0), |_| true), None);
    }

    #[test]
    fn cpu_work_goes_to_gpu_nodes_only_when_nothing_else_fits() {
        let mut index = NodeIndex::new([
            (true, Resources::new(8000, 100, 2)),
            (false, Resources::new(1000, 100, 0)),
        ]);
        assert_eq!(index.find(Resources::new(1000, 1, 0), |_| true), Some(1));
        index.set_free(1, Resources::new(0, 100, 0));
        assert_eq!(index.find(Resources::new(1000, 1, 0), |_| true), Some(0));
        assert_eq!(index.find(Resources::new(1000, 1, 1), |i| i != 0), None);
        assert_eq!(index.find(Resources::new(1000, 1, 3), |_| true), None);
    }

    #[test]
    fn most_free_spreads_and_lets_cpu_work_onto_gpu_nodes() {
        let index = NodeIndex::new([
            (true, Resources::new(8000, 100, 2)),
            (false, Resources::new(1000, 100, 0)),
            (true, Resources::new(4000, 100, 6)),
            (false, Resources::new(2000, 100, 0)),
        ]);
        // CPU work: the most free CPU, GPU node or not.
        assert_eq!(
            index.find_most_free(Resources::new(500, 10, 0), |_| true),
            Some(0)
        );
        assert_eq!(
            index.find_most_free(Resources::new(500, 10, 0), |i| i % 2 == 1),
            Some(3)
        );
        // GPU work: the most free GPUs.
        assert_eq!(
            index.find_most_free(Resources::new(500, 10, 1), |_| true),
            Some(2)
        );
        assert_eq!(
            index.find_most_free(Resources::new(5000, 10, 1), |_| true),
            Some(0)
        );
        assert_eq!(
            index.find_most_free(Resources::new(500, 10, 7), |_| true),
            None
        );
        // Ties go to the later node.
        let tied = NodeIndex::new([
            (false, Resources::new(1000, 100, 0)),
            (false, Resources::new(1000, 100, 0)),
        ]);
        assert_eq!(
            tied.find_most_free(Resources::new(500, 10, 0), |_| true),
            Some(1)
        );
    }
}
