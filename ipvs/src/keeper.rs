//! Keeping the kernel's table in step with a desired table that changes over
//! time: the loop around [`Reconciler`] and its retry policy.
//!
//! [`keep_in_step`] applies a new desired table at once as the difference
//! from the previous one ([`Reconciler::apply_change`]: no read of the
//! kernel), and every `resync` repairs drift (someone ran `ipvsadm` by hand)
//! with [`Reconciler::reconcile`], which reads only what changed where the
//! applier can tell; a period is at least [`DRIFT_READ_COST_FACTOR`] times what
//! a change-detecting read costs ([`paced_resync`]). After a refused operation
//! the next round comes sooner ([`RetryBackoff`]). What the process around it
//! does with each round (an ownership file, counters) goes through
//! [`KeeperHooks`]; the loop knows nothing of the configuration, only
//! [`Table`]s.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::apply::{Applier, ReconcileReport, Reconciler};
use crate::client::IpvsError;
use crate::model::{ServiceKey, Table};

/// A clean round is followed by at least this many times the CPU its
/// change-detecting read cost ([`Applier::read_cost`]): drift detection stays
/// under 1 / 100 = 1 % of a core at any table size. Where a read is cheap (10,000
/// services on real hardware: milliseconds) `resync` is the period; where it is
/// not (the same table under software emulation: about half a second) the
/// period stretches, and the keeper says so.
pub const DRIFT_READ_COST_FACTOR: u32 = 100;

/// The wait after a clean round: `resync`, or more when a read costs more than
/// `resync` / [`DRIFT_READ_COST_FACTOR`].
pub fn paced_resync(resync: Duration, read_cost: Option<Duration>) -> Duration {
    read_cost.map_or(resync, |cost| resync.max(cost * DRIFT_READ_COST_FACTOR))
}

/// When the next round runs: `resync` while every operation succeeds; after a
/// failure 1 s, then doubling, never more than `resync`.
#[derive(Debug, Clone)]
pub struct RetryBackoff {
    resync: Duration,
    failed_rounds: u32,
}

impl RetryBackoff {
    /// The wait after the first failed round.
    pub const FIRST: Duration = Duration::from_secs(1);

    /// A policy whose longest wait (and the wait after a clean round) is `resync`.
    pub fn new(resync: Duration) -> Self {
        RetryBackoff {
            resync,
            failed_rounds: 0,
        }
    }

    /// The wait [`next`](Self::next) would return, without counting the round.
    pub fn peek(&self, failed: bool) -> Duration {
        if !failed {
            return self.resync;
        }
        let doubled = Self::FIRST.saturating_mul(1 << self.failed_rounds.min(16));
        doubled.min(self.resync)
    }

    /// Counts a round (`failed`: some operation was refused) and returns the wait.
    pub fn next(&mut self, failed: bool) -> Duration {
        let wait = self.peek(failed);
        self.failed_rounds = if failed { self.failed_rounds + 1 } else { 0 };
        wait
    }
}

/// What the process around [`keep_in_step`] learns of each round.
pub trait KeeperHooks {
    /// Before a round: the services the reconciler will own once the round has
    /// run (those it owns now and every desired one). Called before any
    /// service can be created, so a record of it (an ownership file) written
    /// here cannot miss an owned service after a crash.
    fn will_own(&mut self, owned: &BTreeSet<ServiceKey>);

    /// After a round: the services owned now (deleted ones are gone) and what
    /// the round did, or why it could not read the kernel's table.
    fn round_done(
        &mut self,
        owned: &BTreeSet<ServiceKey>,
        outcome: &Result<ReconcileReport, IpvsError>,
    );
}

/// Keeps the kernel's table equal to the latest table of `desired_tables`:
/// reads what is there and adopts it (never a flush), applies the difference,
/// and re-reads every `resync` to repair drift. A failed operation is logged
/// with its service or destination and retried on the next round, which comes
/// sooner ([`RetryBackoff`]); the others are applied. The table stays in place
/// on return, so a restart does not disturb established connections.
///
/// Nothing is done (and `start` is not polled, so no IPVS is needed) until a
/// desired table has a service. `start` then gives the reconciler, already
/// owning what a previous run owned, and the hooks; `None` (it could not
/// connect, and said why) ends the loop. Returns when `shutdown` changes or
/// `desired_tables` closes.
pub async fn keep_in_step<A, H>(
    mut desired_tables: watch::Receiver<std::sync::Arc<Table>>,
    start: impl Future<Output = Option<(Reconciler<A>, H)>>,
    resync: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    A: Applier,
    H: KeeperHooks,
{
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return,
        _ = desired_tables.wait_for(|t| t.service_count() > 0) => {}
    }
    let Some((mut reconciler, mut hooks)) = start.await else {
        // Said why; the rest of the daemon runs on, and this task ends with it (an early
        // end would read as a failure to a supervisor).
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    };
    // Shared with the sender, not copied (a table of 10,000 services is megabytes).
    let mut desired = std::sync::Arc::clone(&desired_tables.borrow_and_update());
    let mut first_round = true;
    // After a refused operation the next round comes sooner than `resync`: 1 s, then
    // doubling up to `resync`, back to `resync` once a round applies everything.
    let mut retry = RetryBackoff::new(resync);
    // Whether this round was started by a new desired table (a reload).
    let mut new_table = false;
    // The drift-check period last logged, when pacing stretched it.
    let mut announced_period: Option<Duration> = None;
    loop {
        // Only a round that may create services changes what is owned (a copy of
        // 10,000 keys per round is not free).
        let owned = reconciler.owned();
        if !crate::apply::owns_all(owned, desired.services.keys()) {
            let mut will_own = owned.clone();
            will_own.extend(desired.services.keys().copied());
            hooks.will_own(&will_own);
        }
        // A round without a new table has the last round's table.
        let outcome = if new_table {
            reconciler.apply_change(&desired).await
        } else {
            reconciler.recheck(&desired).await
        };
        hooks.round_done(reconciler.owned(), &outcome);
        let next_round = match outcome {
            Ok(report) => {
                for failure in &report.failures {
                    error!(
                        "IPVS: {} failed: {}; retrying in {:?}, the other changes are applied",
                        failure.op,
                        failure.error,
                        retry.peek(!report.failures.is_empty())
                    );
                }
                if !report.was_in_sync() {
                    info!(
                        applied = report.applied(),
                        failed = report.failures.len(),
                        "IPVS table brought in step with the configuration"
                    );
                } else if first_round {
                    // A restart over a table a previous run programmed: adopted as it is.
                    info!(
                        services = desired.service_count(),
                        destinations = desired.dest_count(),
                        "IPVS table already in step with the configuration (adopted, no changes)"
                    );
                } else {
                    debug!("IPVS table still in step with the configuration");
                }
                first_round = false;
                let failed = !report.failures.is_empty();
                let wait = retry.next(failed);
                if failed {
                    wait
                } else {
                    // Weighed once (a median over the last reads) for the pace and its log line.
                    let read_cost = reconciler.applier().read_cost();
                    let paced = paced_resync(wait, read_cost);
                    // Said when the period changes by a quarter or more, not every round.
                    let said = announced_period.unwrap_or(resync);
                    if paced.abs_diff(said) * 4 > said {
                        info!(
                            period = ?paced,
                            ?read_cost,
                            resync = ?resync,
                            "IPVS drift checks paced: one read of the kernel's table costs more than 1/{DRIFT_READ_COST_FACTOR} of the resync period"
                        );
                        announced_period = Some(paced);
                    }
                    paced
                }
            }
            Err(e) => {
                let wait = retry.next(true);
                warn!("IPVS: reading the kernel table failed: {e}; retrying in {wait:?}");
                wait
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = desired_tables.changed() => {
                if changed.is_err() {
                    return;
                }
                desired = std::sync::Arc::clone(&desired_tables.borrow_and_update());
                new_table = true;
            }
            () = tokio::time::sleep(next_round) => new_table = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};

    use futures::FutureExt as _;
    use tokio::time::Instant;

    use super::*;
    use crate::apply::MemoryApplier;
    use crate::diff::Op;
    use crate::model::{DestKey, Destination, Forwarding, Protocol, Service};

    #[test]
    fn a_costly_drift_read_stretches_the_period_to_a_hundred_times_its_cost() {
        let resync = Duration::from_secs(10);
        assert_eq!(paced_resync(resync, None), resync);
        // 10,000 services on real hardware: the period is the configured one.
        assert_eq!(
            paced_resync(resync, Some(Duration::from_millis(20))),
            resync
        );
        // Under software emulation: 0.55 s of CPU per read.
        assert_eq!(
            paced_resync(resync, Some(Duration::from_millis(550))),
            Duration::from_secs(55)
        );
    }

    #[test]
    fn a_refused_operation_is_retried_sooner_backing_off_to_the_resync_period() {
        let mut retry = RetryBackoff::new(Duration::from_secs(10));
        assert_eq!(retry.next(false), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| retry.next(true).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry.next(false), Duration::from_secs(10), "success resets");
        assert_eq!(retry.next(true), Duration::from_secs(1));
    }

    const RESYNC: Duration = Duration::from_secs(60);

    /// An in-memory kernel the test and the keeper share.
    #[derive(Clone)]
    struct SharedKernel(Arc<Mutex<MemoryApplier>>);

    impl SharedKernel {
        fn empty() -> Self {
            SharedKernel(Arc::new(Mutex::new(MemoryApplier::new(Table::new()))))
        }

        fn table(&self) -> Table {
            self.0.lock().unwrap().table.clone()
        }
    }

    impl Applier for SharedKernel {
        fn read_table(&mut self) -> impl Future<Output = Result<Table, IpvsError>> + Send {
            let mut kernel = self.0.lock().unwrap();
            let table = kernel.read_table().now_or_never().expect("in memory");
            std::future::ready(table)
        }

        fn apply(
            &mut self,
            ops: std::sync::Arc<Vec<Op>>,
        ) -> impl Future<Output = Vec<Result<(), IpvsError>>> + Send {
            let mut kernel = self.0.lock().unwrap();
            let results = kernel.apply(ops).now_or_never().expect("in memory");
            std::future::ready(results)
        }
    }

    /// One round as the hooks saw it.
    #[derive(Debug, Clone, PartialEq)]
    struct Round {
        /// Seconds since the test began.
        at: u64,
        failures: usize,
    }

    /// What `will_own` was told, beside the services the kernel held then.
    type OwnedAndKernel = (BTreeSet<ServiceKey>, BTreeSet<ServiceKey>);

    /// Records the rounds and each `will_own` call.
    #[derive(Clone)]
    struct Recorder {
        began: Instant,
        kernel: SharedKernel,
        rounds: Arc<Mutex<Vec<Round>>>,
        will_own: Arc<Mutex<Vec<OwnedAndKernel>>>,
    }

    impl KeeperHooks for Recorder {
        fn will_own(&mut self, owned: &BTreeSet<ServiceKey>) {
            let in_kernel = self.kernel.table().services.keys().copied().collect();
            self.will_own
                .lock()
                .unwrap()
                .push((owned.clone(), in_kernel));
        }

        fn round_done(
            &mut self,
            _owned: &BTreeSet<ServiceKey>,
            outcome: &Result<ReconcileReport, IpvsError>,
        ) {
            let failures = outcome.as_ref().map_or(usize::MAX, |r| r.failures.len());
            self.rounds.lock().unwrap().push(Round {
                at: self.began.elapsed().as_secs(),
                failures,
            });
        }
    }

    fn tcp(last: u8) -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            port: 80,
        }
    }

    /// A table of the services `192.0.2.<last>:80`, one real server each.
    fn table(services: &[u8]) -> Table {
        let mut table = Table::new();
        for &last in services {
            table.insert_service(tcp(last), Service::new("wrr"));
            table.insert_dest(
                &tcp(last),
                DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80),
                Destination::new(Forwarding::DirectRoute, 1),
            );
        }
        table
    }

    struct Running {
        kernel: SharedKernel,
        recorder: Recorder,
        desired: watch::Sender<Arc<Table>>,
        shutdown: watch::Sender<bool>,
        started: Arc<Mutex<bool>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn rounds(&self) -> Vec<Round> {
            self.recorder.rounds.lock().unwrap().clone()
        }

        fn round_times(&self) -> Vec<u64> {
            self.rounds().iter().map(|r| r.at).collect()
        }
    }

    /// Spawns the keeper over an empty in-memory kernel, desiring `first`.
    fn spawn(first: Table) -> Running {
        let kernel = SharedKernel::empty();
        let recorder = Recorder {
            began: Instant::now(),
            kernel: kernel.clone(),
            rounds: Arc::default(),
            will_own: Arc::default(),
        };
        let (desired, desired_rx) = watch::channel(Arc::new(first));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let started = Arc::new(Mutex::new(false));
        let start = {
            let (kernel, recorder, started) = (kernel.clone(), recorder.clone(), started.clone());
            async move {
                *started.lock().unwrap() = true;
                Some((Reconciler::new(kernel), recorder))
            }
        };
        let task = tokio::spawn(keep_in_step(desired_rx, start, RESYNC, shutdown_rx));
        Running {
            kernel,
            recorder,
            desired,
            shutdown,
            started,
            task,
        }
    }

    /// Lets the paused clock run `seconds` forward, the keeper running as it goes.
    async fn run_for(seconds: u64) {
        for _ in 0..seconds * 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_operation_is_retried_after_one_second_then_doubling() {
        let first = table(&[10]);
        let running = spawn(first.clone());
        running
            .kernel
            .0
            .lock()
            .unwrap()
            .fail_when(|op| matches!(op, Op::AddService { .. }).then_some(libc::ENOMEM));
        run_for(8).await;
        assert_eq!(
            running.round_times(),
            [0, 1, 3, 7],
            "1 s, then 2 s, then 4 s"
        );
        // The service refused, and so its destination.
        assert!(running.rounds().iter().all(|r| r.failures == 2));
        running.kernel.0.lock().unwrap().clear_failures();
        run_for(8).await;
        assert_eq!(running.round_times(), [0, 1, 3, 7, 15]);
        assert_eq!(running.rounds()[4].failures, 0);
        assert_eq!(running.kernel.table(), first);
        run_for(RESYNC.as_secs()).await;
        assert_eq!(
            running.round_times(),
            [0, 1, 3, 7, 15, 75],
            "a clean round brings the resync period back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_desired_table_is_applied_at_once() {
        let running = spawn(table(&[10]));
        run_for(1).await;
        assert_eq!(running.kernel.table(), table(&[10]));
        running.desired.send_replace(Arc::new(table(&[10, 11])));
        run_for(1).await;
        assert_eq!(running.kernel.table(), table(&[10, 11]));
        assert_eq!(running.round_times(), [0, 1], "not at the resync period");
    }

    #[tokio::test(start_paused = true)]
    async fn drift_is_repaired_at_the_resync_period() {
        let running = spawn(table(&[10]));
        run_for(1).await;
        // Someone deletes the service by hand.
        running.kernel.0.lock().unwrap().table = Table::new();
        run_for(RESYNC.as_secs() - 2).await;
        assert_eq!(
            running.kernel.table(),
            Table::new(),
            "not before the period"
        );
        run_for(2).await;
        assert_eq!(running.kernel.table(), table(&[10]));
        assert_eq!(running.round_times(), [0, RESYNC.as_secs()]);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_starts_until_a_service_is_desired_and_shutdown_keeps_the_table() {
        let running = spawn(Table::new());
        run_for(2 * RESYNC.as_secs()).await;
        assert!(!*running.started.lock().unwrap(), "no IPVS needed yet");
        assert!(running.rounds().is_empty());
        running.desired.send_replace(Arc::new(table(&[10])));
        run_for(1).await;
        assert!(*running.started.lock().unwrap());
        assert_eq!(running.kernel.table(), table(&[10]));
        running.shutdown.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), running.task)
            .await
            .expect("the keeper returns on shutdown")
            .unwrap();
        assert_eq!(running.kernel.table(), table(&[10]), "never flushed");
    }

    #[tokio::test(start_paused = true)]
    async fn services_to_own_are_told_before_the_round_that_creates_them() {
        let running = spawn(table(&[10]));
        run_for(1).await;
        running.desired.send_replace(Arc::new(table(&[11])));
        run_for(1).await;
        let calls = running.recorder.will_own.lock().unwrap().clone();
        let (owned, in_kernel) = &calls[0];
        assert!(owned.contains(&tcp(10)));
        assert!(!in_kernel.contains(&tcp(10)), "told before it was created");
        let (owned, in_kernel) = &calls[1];
        assert!(owned.contains(&tcp(11)) && !in_kernel.contains(&tcp(11)));
        assert!(owned.contains(&tcp(10)), "still owned until deleted");
        assert_eq!(running.kernel.table(), table(&[11]));
    }
}
