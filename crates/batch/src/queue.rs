//! The batch queue's decisions, as plain state.

use std::collections::VecDeque;
use std::time::Instant;

use crate::{Batching, Pending};

/// What a worker should do next.
#[derive(Debug)]
pub enum Take {
    /// Run these requests as one execution.
    Run(Vec<Pending>),
    /// The oldest request's batch may still fill; look again at this instant (or when woken).
    WaitUntil(Instant),
    Empty,
}

/// A FIFO of pending requests.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Pending>,
    batching: Option<Batching>,
}

impl Queue {
    pub fn new(batching: Option<Batching>) -> Queue {
        Queue {
            items: VecDeque::new(),
            batching,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Removes requests whose caller went away.
    pub fn drop_cancelled(&mut self) {
        self.items.retain(|p| !p.cancelled());
    }

    pub fn push(&mut self, p: Pending) {
        self.items.push_back(p);
    }

    /// Decides the next execution. Drops requests whose caller went away. A batch is the oldest
    /// request plus later requests with the same key, up to `max_batch_size` rows; it runs when
    /// full, when the oldest request has waited `max_queue_delay`, or when no other request could
    /// ever join it (unbatchable).
    pub fn take(&mut self, now: Instant) -> Take {
        self.drop_cancelled();
        let Some(front) = self.items.front() else {
            return Take::Empty;
        };
        let Some(b) = &self.batching else {
            return self.pop_front();
        };
        let Some(key) = front.key.clone() else {
            return self.pop_front();
        };
        let mut rows = 0;
        let mut chosen = Vec::new();
        for (i, p) in self.items.iter().enumerate() {
            if p.key.as_ref() == Some(&key) && rows + p.rows <= b.max_batch_size {
                rows += p.rows;
                chosen.push(i);
                if rows == b.max_batch_size {
                    break;
                }
            }
        }
        let deadline = front.enqueued + b.max_queue_delay;
        if rows < b.max_batch_size && now < deadline {
            return Take::WaitUntil(deadline);
        }
        let mut batch = Vec::with_capacity(chosen.len());
        for i in chosen.into_iter().rev() {
            if let Some(p) = self.items.remove(i) {
                batch.push(p);
            }
        }
        batch.reverse();
        Take::Run(batch)
    }

    fn pop_front(&mut self) -> Take {
        match self.items.pop_front() {
            Some(p) => Take::Run(vec![p]),
            None => Take::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mofang_backend::{Tensor, TensorData};
    use tokio::sync::oneshot;

    use super::*;

    fn request(
        rows: usize,
        cols: usize,
    ) -> (Pending, oneshot::Receiver<crate::Result<crate::Outputs>>) {
        let (tx, rx) = oneshot::channel();
        let t =
            Tensor::new(vec![rows, cols], TensorData::F32(vec![0.0; rows * cols])).expect("valid");
        (Pending::new(vec![("x".into(), t)], tx), rx)
    }

    fn batching(max: usize, delay_ms: u64) -> Option<Batching> {
        Some(Batching {
            max_batch_size: max,
            max_queue_delay: Duration::from_millis(delay_ms),
            allowed_batch_sizes: Vec::new(),
        })
    }

    fn rows_of(t: Take) -> Vec<usize> {
        match t {
            Take::Run(b) => b.iter().map(|p| p.rows).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn waits_for_the_batch_to_fill_until_the_delay() {
        let mut q = Queue::new(batching(4, 10));
        let (p, _rx) = request(1, 2);
        let t0 = p.enqueued;
        q.push(p);
        assert!(matches!(q.take(t0), Take::WaitUntil(d) if d == t0 + Duration::from_millis(10)));
        assert_eq!(rows_of(q.take(t0 + Duration::from_millis(10))), vec![1]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_batch_runs_at_once_and_never_exceeds_the_maximum() {
        let mut q = Queue::new(batching(4, 1000));
        let mut keep = Vec::new();
        for rows in [2, 1, 3, 1] {
            let (p, rx) = request(rows, 2);
            keep.push(rx);
            q.push(p);
        }
        // 2 + 1 fit, 3 would overflow, the last 1 completes 4 rows.
        assert_eq!(rows_of(q.take(Instant::now())), vec![2, 1, 1]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn different_shapes_are_never_mixed() {
        let mut q = Queue::new(batching(8, 0));
        let mut keep = Vec::new();
        for cols in [2, 3, 2] {
            let (p, rx) = request(1, cols);
            keep.push(rx);
            q.push(p);
        }
        let now = Instant::now() + Duration::from_millis(1);
        assert_eq!(rows_of(q.take(now)), vec![1, 1]);
        let Take::Run(rest) = q.take(now) else {
            panic!("the other shape runs next")
        };
        assert_eq!(rest[0].inputs[0].1.shape(), &[1, 3]);
    }

    #[test]
    fn cancelled_requests_are_dropped_before_they_run() {
        let mut q = Queue::new(None);
        let (p1, rx1) = request(1, 2);
        let (p2, _rx2) = request(1, 2);
        q.push(p1);
        q.push(p2);
        drop(rx1);
        let Take::Run(batch) = q.take(Instant::now()) else {
            panic!("one request remains")
        };
        assert_eq!(batch.len(), 1);
        assert!(!batch[0].cancelled());
        assert!(matches!(q.take(Instant::now()), Take::Empty));
    }

    #[test]
    fn without_batching_each_request_runs_alone() {
        let mut q = Queue::new(None);
        let mut keep = Vec::new();
        for _ in 0..3 {
            let (p, rx) = request(2, 2);
            keep.push(rx);
            q.push(p);
        }
        assert_eq!(rows_of(q.take(Instant::now())), vec![2]);
        assert_eq!(q.len(), 2);
    }
}
