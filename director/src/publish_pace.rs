//! When the health wiring may publish the next desired IPVS table. A table is made
//! from every virtual server, so its cost grows with the configuration, not with the
//! change: at 10,000 virtual servers a few milliseconds natively, tenths of a second
//! under emulation. While verdicts keep changing (a real server behind every virtual
//! server going down fails 10,000 checks over one `delay_loop`), publishing each one at
//! once took more than half a core natively. Publishes are therefore paced by what they
//! cost: after one, the next waits [`PublishPacer::COST_FACTOR`] times the typical cost,
//! and never more than [`PublishPacer::LONGEST_WAIT`]; the verdicts that arrive
//! meanwhile go out together. A change after a quiet spell is published at once.

use std::time::{Duration, Instant};

use haldir_ipvs::drift::ReadCosts;

/// The pace of the desired table's publications (sans-IO: the caller says when a
/// publication happened and what it cost, and asks when the next may happen).
#[derive(Debug, Clone, Default)]
pub struct PublishPacer {
    /// The last publications' costs (their median is the typical cost).
    costs: ReadCosts,
    /// The next publication waits until then.
    next_allowed: Option<Instant>,
}

impl PublishPacer {
    /// A publication is followed by at least this many times its typical cost: while
    /// verdicts keep changing, publishing takes at most 1 / (1 + 19) = 5 % of a core.
    pub const COST_FACTOR: u32 = 19;

    /// The longest a changed verdict waits for its publication (when a table costs more
    /// than 1 / 19 s, the share of a core is above 5 %, and the wait is this).
    pub const LONGEST_WAIT: Duration = Duration::from_secs(1);

    /// A pacer that allows a publication at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A publication ended at `at` and cost `cost`.
    pub fn published(&mut self, at: Instant, cost: Duration) {
        self.costs.record(cost);
        self.next_allowed = self
            .costs
            .typical()
            .map(|typical| at + (typical * Self::COST_FACTOR).min(Self::LONGEST_WAIT));
    }

    /// Whether a publication may happen at `now`.
    pub fn may_publish(&self, now: Instant) -> bool {
        self.next_allowed.is_none_or(|next| now >= next)
    }

    /// When the next publication may happen, if it must wait at all.
    pub fn next_allowed(&self) -> Option<Instant> {
        self.next_allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn publications_are_not_held_until_three_costs_are_known() {
        let start = Instant::now();
        let mut pacer = PublishPacer::new();
        assert!(pacer.may_publish(start));
        pacer.published(start, 10 * MS);
        pacer.published(start + MS, 10 * MS);
        assert!(pacer.may_publish(start + MS));
        assert_eq!(pacer.next_allowed(), None);
    }

    #[test]
    fn a_publication_waits_nineteen_times_the_median_cost_after_the_last() {
        let start = Instant::now();
        let mut pacer = PublishPacer::new();
        pacer.published(start, 4 * MS);
        pacer.published(start, 6 * MS);
        let last = start + 100 * MS;
        pacer.published(last, 5 * MS);
        // The median of 4, 6 and 5 ms is 5 ms: the next after 95 ms.
        assert_eq!(pacer.next_allowed(), Some(last + 95 * MS));
        assert!(!pacer.may_publish(last + 94 * MS));
        assert!(pacer.may_publish(last + 95 * MS));
    }

    #[test]
    fn one_slow_publication_does_not_stretch_the_wait() {
        let start = Instant::now();
        let mut pacer = PublishPacer::new();
        pacer.published(start, 5 * MS);
        pacer.published(start, 5 * MS);
        // A stall (the host descheduling the thread) in one of three.
        pacer.published(start, 900 * MS);
        assert_eq!(pacer.next_allowed(), Some(start + 95 * MS));
    }

    #[test]
    fn the_wait_is_at_most_the_longest_wait_however_costly_a_table_is() {
        let start = Instant::now();
        let mut pacer = PublishPacer::new();
        for _ in 0..3 {
            pacer.published(start, 200 * MS);
        }
        // 19 × 200 ms would be 3.8 s.
        assert_eq!(
            pacer.next_allowed(),
            Some(start + PublishPacer::LONGEST_WAIT)
        );
        assert!(pacer.may_publish(start + PublishPacer::LONGEST_WAIT));
    }
}
