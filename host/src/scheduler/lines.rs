//! The ready jobs one dispatch round works through: each user's line, read
//! from the store once per round, as deep as the free slots.
//!
//! Reading the lines once and dispatching several jobs from them keeps a
//! round's store reads at one, however many slots are free; the priority
//! policy still chooses every single dispatch among the users' fronts,
//! with counts updated as the round goes, exactly as if the lines had
//! been read again.

use std::collections::VecDeque;

use crate::store::Head;

/// Per user, the next ready jobs in line order.
pub(super) struct Lines {
    lines: Vec<VecDeque<Head>>,
}

impl Lines {
    /// Groups heads as the store returns them (grouped by user, each
    /// user's in line order).
    pub(super) fn new(heads: Vec<Head>) -> Self {
        let mut lines: Vec<VecDeque<Head>> = Vec::new();
        for head in heads {
            match lines.last_mut() {
                Some(line) if line.front().is_some_and(|h| h.user_id == head.user_id) => line.push_back(head),
                _ => lines.push(VecDeque::from([head])),
            }
        }
        Self { lines }
    }

    /// Whether no user has a job left.
    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Each user's front job; index `i` is line `i`.
    pub(super) fn fronts(&self) -> Vec<&Head> {
        self.lines.iter().filter_map(VecDeque::front).collect()
    }

    /// Takes line `index`'s front job; when `dispatched`, the rest of that
    /// user's line counts one more running and one fewer ready.
    pub(super) fn take_front(&mut self, index: usize, dispatched: bool) -> Option<Head> {
        let line = self.lines.get_mut(index)?;
        let head = line.pop_front()?;
        if dispatched {
            for rest in line.iter_mut() {
                rest.user_running += 1;
                rest.user_queued = rest.user_queued.saturating_sub(1);
            }
        }
        Some(head)
    }

    /// Drops the lines with no job left (after a pass of `take_front`).
    pub(super) fn prune(&mut self) {
        self.lines.retain(|line| !line.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::types::Priority;

    fn head(user: &str, job: &str) -> Head {
        Head {
            job_id: job.into(),
            user_id: user.into(),
            priority: Priority::Normal,
            created_at_ms: 0,
            user_running: 0,
            user_queued: 2,
            user_last_dispatch_ms: None,
        }
    }

    #[test]
    fn lines_group_by_user_and_count_dispatches() {
        let mut lines = Lines::new(vec![head("a", "a1"), head("a", "a2"), head("b", "b1")]);
        let fronts: Vec<&str> = lines.fronts().iter().map(|h| h.job_id.as_str()).collect();
        assert_eq!(fronts, ["a1", "b1"]);
        assert_eq!(lines.take_front(0, true).unwrap().job_id, "a1");
        let a2 = lines.fronts()[0].clone();
        assert_eq!((a2.job_id.as_str(), a2.user_running, a2.user_queued), ("a2", 1, 1));
        lines.take_front(1, false);
        lines.prune();
        assert_eq!(lines.fronts().len(), 1);
        lines.take_front(0, true);
        lines.prune();
        assert!(lines.is_empty());
    }
}
