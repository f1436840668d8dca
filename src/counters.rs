//! The counters the daemon keeps outside the VRRP driver (the IPVS reconciler's, the
//! notify scripts', the metrics server's and the health-check scheduler's), shared through an `Arc` and bumped with
//! relaxed atomics; the status model takes a snapshot of them.

use std::sync::atomic::{AtomicU64, Ordering};

use haldir_ipvs::Op;

/// Counters the daemon keeps outside the driver: the IPVS reconciler's and
/// the notify scripts'. Shared through an `Arc`, bumped with relaxed atomics.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    /// Reconciliation rounds run.
    pub reconcile_runs: AtomicU64,
    /// Reading the kernel table failed (the round was skipped).
    pub reconcile_read_errors: AtomicU64,
    /// Operations applied, by kind: add / set / delete service / destination.
    pub ops_add_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_service: AtomicU64,
    /// See `ops_add_service`.
    pub ops_add_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_set_dest: AtomicU64,
    /// See `ops_add_service`.
    pub ops_del_dest: AtomicU64,
    /// Operations the kernel refused.
    pub op_failures: AtomicU64,
    /// Notify scripts that exited 0.
    pub notify_ok: AtomicU64,
    /// Notify scripts that failed (non-zero exit, signal, could not start).
    pub notify_failed: AtomicU64,
    /// Notify scripts killed at `notify_timeout`.
    pub notify_timeout: AtomicU64,
    /// Transitions the notify task missed (its event channel overflowed).
    pub notify_missed: AtomicU64,
    /// Lines written to notify FIFOs (one per FIFO written to).
    pub notify_fifo_lines: AtomicU64,
    /// Lines a notify FIFO could not take (full: its reader is behind or gone).
    pub notify_fifo_dropped: AtomicU64,
    /// Connections to `/metrics` closed at once: the server had its maximum open.
    pub metrics_connections_refused: AtomicU64,
    /// Desired IPVS tables the health wiring published because a verdict changed.
    pub table_publications: AtomicU64,
    /// Times changed verdicts waited for the publication pace.
    pub table_publications_held: AtomicU64,
    /// The health-check scheduler's counters (checks scheduled, the worst lateness), once
    /// the health wiring has started it.
    pub health_checks: std::sync::OnceLock<haldir_health::scheduler::StatsReader>,
}

impl DaemonCounters {
    /// Counts one reconciliation round: the operations it carried out and
    /// the failed ones among them.
    pub fn count_reconcile(&self, ops: &[Op], failures: usize) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        for op in ops {
            let counter = match op {
                Op::AddService { .. } => &self.ops_add_service,
                Op::SetService { .. } => &self.ops_set_service,
                Op::DelService { .. } => &self.ops_del_service,
                Op::AddDest { .. } => &self.ops_add_dest,
                Op::SetDest { .. } => &self.ops_set_dest,
                Op::DelDest { .. } => &self.ops_del_dest,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.op_failures
            .fetch_add(failures as u64, Ordering::Relaxed);
    }

    /// The counters as they are now, for the status.
    pub fn snapshot(&self) -> haldir_status::DaemonCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let checks = self.health_checks.get().map(|reader| reader.snapshot());
        haldir_status::DaemonCounters {
            reconcile_runs: get(&self.reconcile_runs),
            reconcile_read_errors: get(&self.reconcile_read_errors),
            ops_add_service: get(&self.ops_add_service),
            ops_set_service: get(&self.ops_set_service),
            ops_del_service: get(&self.ops_del_service),
            ops_add_dest: get(&self.ops_add_dest),
            ops_set_dest: get(&self.ops_set_dest),
            ops_del_dest: get(&self.ops_del_dest),
            op_failures: get(&self.op_failures),
            notify_ok: get(&self.notify_ok),
            notify_failed: get(&self.notify_failed),
            notify_timeout: get(&self.notify_timeout),
            notify_missed: get(&self.notify_missed),
            notify_fifo_lines: get(&self.notify_fifo_lines),
            notify_fifo_dropped: get(&self.notify_fifo_dropped),
            metrics_connections_refused: get(&self.metrics_connections_refused),
            health_checks_scheduled: checks.map_or(0, |c| c.checks),
            health_check_runs: checks.map_or(0, |c| c.runs_started),
            health_check_max_lateness_us: checks.map_or(0, |c| {
                u64::try_from(c.max_lateness.as_micros()).unwrap_or(u64::MAX)
            }),
            health_table_publications: get(&self.table_publications),
            health_table_publications_held: get(&self.table_publications_held),
        }
    }

    /// Counts a round whose read of the kernel table failed.
    pub fn count_read_error(&self) {
        self.reconcile_runs.fetch_add(1, Ordering::Relaxed);
        self.reconcile_read_errors.fetch_add(1, Ordering::Relaxed);
    }
}
