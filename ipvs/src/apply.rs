//! The reconciler: read what the kernel has, diff against the desired table,
//! apply, report. Called once at start (adopting what is there; it never
//! flushes) and then periodically, which repairs drift such as an entry
//! someone added or deleted by hand with `ipvsadm`.
//!
//! The reconciler remembers the kernel's table as it last read it, with its
//! own successful ops applied (`known`). A reload ([`Reconciler::apply_change`])
//! diffs the new desired table against that memory and applies exactly the ops
//! the difference implies, with no read; drift is left to the periodic
//! [`Reconciler::reconcile`], which asks the applier for the table *given what
//! it knew* ([`Applier::read_since`]): the real client reads in full only the
//! services that changed (`crate::drift`).
//!
//! The kernel side is behind [`Applier`], implemented by
//! [`IpvsClient`](crate::IpvsClient) and by [`MemoryApplier`], an in-memory
//! kernel with the same error semantics for tests of the logic.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use crate::client::IpvsError;
use crate::diff::{diff_counting_others, Op};
use crate::model::{ServiceKey, Table};

/// Where the table lives.
pub trait Applier {
    /// Reads the whole table.
    fn read_table(&mut self) -> impl Future<Output = Result<Table, IpvsError>> + Send;

    /// Reads the whole table, knowing that it was `known` when last read
    /// (with the applier's own successful ops since). An applier that can
    /// tell cheaply what changed reads in full only that, and returns `known`
    /// itself when nothing did; the default reads everything.
    fn read_since(
        &mut self,
        known: Option<Arc<Table>>,
    ) -> impl Future<Output = Result<Arc<Table>, IpvsError>> + Send {
        let _ = known;
        let read = self.read_table();
        async move { read.await.map(Arc::new) }
    }

    /// What a change-detecting read costs in CPU time, when the applier measures
    /// it (the [`WatchedClient`](crate::drift::WatchedClient): the median of its
    /// last three reads): [`crate::keep_in_step`] spaces its rounds so that drift
    /// detection stays a small share of a core at any table size.
    fn read_cost(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether the last [`read_since`](Self::read_since) found the kernel's table as
    /// the `known` it was given, and so returned it unread. `false` when the applier
    /// cannot tell.
    fn unchanged_since_known(&self) -> bool {
        false
    }

    /// Applies `ops` in order, one result per op; a failing op must not stop
    /// the ones after it.
    ///
    /// The operations come shared, so that an applier that works on another thread can
    /// take them there without a copy (a start's 50,000 operations are megabytes).
    fn apply(
        &mut self,
        ops: Arc<Vec<Op>>,
    ) -> impl Future<Output = Vec<Result<(), IpvsError>>> + Send;
}

/// An operation that failed, with why.
#[derive(Debug)]
pub struct OpFailure {
    /// The operation (it names the service and destination).
    pub op: Op,
    /// The kernel's answer.
    pub error: IpvsError,
}

/// What one [`Reconciler::reconcile`] did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Every operation the diff asked for, in order.
    pub ops: Vec<Op>,
    /// The operations that failed (a subset of `ops`).
    pub failures: Vec<OpFailure>,
}

impl ReconcileReport {
    /// Whether the kernel already matched (no operation was needed).
    pub fn was_in_sync(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations that succeeded.
    pub fn applied(&self) -> usize {
        self.ops.len() - self.failures.len()
    }
}

/// A desired table as the reconciler is given it: a [`Table`], or an `Arc<Table>` it may
/// keep as its memory of the kernel's table when the kernel ends up equal to it, instead of
/// a second copy of the same megabytes (10,000 services: about 4.6 MB).
pub trait DesiredTable {
    /// The table.
    fn table(&self) -> &Table;
    /// The table, shared, when it can be.
    fn shared(&self) -> Option<Arc<Table>>;
}

impl DesiredTable for Table {
    fn table(&self) -> &Table {
        self
    }

    fn shared(&self) -> Option<Arc<Table>> {
        None
    }
}

impl DesiredTable for Arc<Table> {
    fn table(&self) -> &Table {
        self
    }

    fn shared(&self) -> Option<Arc<Table>> {
        Some(Arc::clone(self))
    }
}

/// Keeps the kernel's table equal to a desired one, on the services it owns.
///
/// Ownership: every service of a desired table passed to
/// [`reconcile`](Self::reconcile) becomes owned; a service that later
/// leaves the desired table stays owned until it has been deleted. Services
/// never owned are never touched. A restarted haldir starts with the owned
/// set it is given ([`with_owned`](Self::with_owned)), so what the kernel
/// holds that matches the configuration is adopted with zero changes.
#[derive(Debug)]
pub struct Reconciler<A> {
    applier: A,
    owned: BTreeSet<ServiceKey>,
    /// The kernel's table as last read, with our successful ops applied;
    /// `None` before the first read and after a failed op (the kernel then
    /// differs from what we would assume, so the next round reads in full).
    /// The desired table itself when the two are equal.
    known: Option<Arc<Table>>,
}

impl<A: Applier> Reconciler<A> {
    /// A reconciler that owns nothing yet.
    pub fn new(applier: A) -> Self {
        Reconciler {
            applier,
            owned: BTreeSet::new(),
            known: None,
        }
    }

    /// A reconciler that already owns `owned` (e.g. the services of the
    /// previous configuration, on reload).
    pub fn with_owned(applier: A, owned: impl IntoIterator<Item = ServiceKey>) -> Self {
        Reconciler {
            applier,
            owned: owned.into_iter().collect(),
            known: None,
        }
    }

    /// The services this reconciler may change or delete.
    pub fn owned(&self) -> &BTreeSet<ServiceKey> {
        &self.owned
    }

    /// The applier.
    pub fn applier(&self) -> &A {
        &self.applier
    }

    /// The applier, mutably.
    pub fn applier_mut(&mut self) -> &mut A {
        &mut self.applier
    }

    /// Reads the kernel table (through [`Applier::read_since`]: only what
    /// changed, where the applier can tell), applies the difference to
    /// `desired` and reports every failed op. This is the drift repair. Only
    /// a failure to read the table is an `Err`; then nothing was changed.
    pub async fn reconcile(
        &mut self,
        desired: &impl DesiredTable,
    ) -> Result<ReconcileReport, IpvsError> {
        let known = self.known.take();
        let actual = self.applier.read_since(known).await?;
        self.apply_against(desired, actual).await
    }

    /// [`reconcile`](Self::reconcile) for the same `desired` as the last round's. When
    /// that round left the kernel as `desired` (the table is known: no operation
    /// failed) and the applier's read finds the kernel unchanged since, there is
    /// nothing to compare: at 10,000 services the comparison was the daemon's largest
    /// steady cost after the read itself (about 0.4 s of emulated CPU a round). The
    /// caller must pass the table it passed last.
    pub async fn recheck(
        &mut self,
        desired: &impl DesiredTable,
    ) -> Result<ReconcileReport, IpvsError> {
        let Some(known) = self.known.take() else {
            return self.reconcile(desired).await;
        };
        let actual = self.applier.read_since(Some(known)).await?;
        if self.applier.unchanged_since_known() {
            self.known = Some(actual);
            return Ok(ReconcileReport::default());
        }
        self.apply_against(desired, actual).await
    }

    /// A new desired table (a reload): applies the difference between the
    /// kernel's table as this reconciler knows it and `desired` (exactly the
    /// ops that difference implies), without reading the kernel. Drift made
    /// since the last read is the next [`reconcile`](Self::reconcile)'s.
    /// Before the first read (or after a failed op) this is a `reconcile`.
    pub async fn apply_change(
        &mut self,
        desired: &impl DesiredTable,
    ) -> Result<ReconcileReport, IpvsError> {
        match self.known.take() {
            Some(known) => self.apply_against(desired, known).await,
            None => self.reconcile(desired).await,
        }
    }

    /// Diffs `desired` against `actual` (the kernel's table), applies, and
    /// remembers `actual` with the successful ops as the kernel's table.
    async fn apply_against(
        &mut self,
        desired: &impl DesiredTable,
        actual: Arc<Table>,
    ) -> Result<ReconcileReport, IpvsError> {
        let shared = desired.shared();
        let desired = desired.table();
        if !owns_all(&self.owned, desired.services.keys()) {
            self.owned.extend(desired.services.keys().copied());
        }
        let owned = &self.owned;
        let (ops, others) = diff_counting_others(desired, &actual, &|key| owned.contains(key));
        if ops.is_empty() {
            self.known = Some(Self::shared_if_equal(actual, shared));
            return Ok(ReconcileReport::default());
        }
        // What the kernel holds after the round, built from what it accepts. Not when the
        // kernel has no service of anyone else's and `desired` can be shared: the diff
        // then sets every service and destination of ours to `desired`'s values and
        // removes the rest, so if all are accepted the kernel is `desired`, and if one is
        // refused nothing is known. At 10,000 services that saves a copy of the table
        // (the known one is shared), the in-memory replay and a comparison of two whole
        // tables: a start's 50,000 inserts, and most of a one-weight reload's work.
        let mut actual = match (&shared, others) {
            (Some(_), 0) => None,
            // Cloned only if the table is still shared (with an earlier desired one).
            _ => Some(Arc::unwrap_or_clone(actual)),
        };
        let ops = Arc::new(ops);
        let results = self.applier.apply(Arc::clone(&ops)).await;
        // The applier has let go of them by now; a copy only if one still holds them.
        let ops = Arc::unwrap_or_clone(ops);
        let mut failures = Vec::new();
        for (op, result) in ops.iter().zip(results) {
            match result {
                Ok(()) => {
                    if let Op::DelService { key } = op {
                        self.owned.remove(key);
                    }
                    // What the kernel accepted is what it now holds.
                    if let Some(actual) = &mut actual {
                        let _ = apply_in_memory(actual, op);
                    }
                }
                Err(error) => {
                    tracing::warn!(%op, %error, "IPVS operation failed");
                    failures.push(OpFailure {
                        op: op.clone(),
                        error,
                    });
                }
            }
        }
        self.known = match actual {
            _ if !failures.is_empty() => None,
            Some(actual) => Some(Self::shared_if_equal(Arc::new(actual), shared)),
            None => shared,
        };
        Ok(ReconcileReport { ops, failures })
    }

    /// `actual`, or the desired table in its place when the two are equal (no service
    /// of others in the kernel, nothing pending): one copy of the table instead of two.
    fn shared_if_equal(actual: Arc<Table>, desired: Option<Arc<Table>>) -> Arc<Table> {
        match desired {
            Some(desired) if !Arc::ptr_eq(&actual, &desired) && *actual == *desired => desired,
            _ => actual,
        }
    }
}

/// Whether `owned` holds every one of `keys`, which come in ascending order, each once
/// (a table's): one walk over both, not a search per key.
pub fn owns_all<'k>(
    owned: &BTreeSet<ServiceKey>,
    keys: impl IntoIterator<Item = &'k ServiceKey>,
) -> bool {
    let mut owned = owned.iter().peekable();
    keys.into_iter().all(|key| {
        while owned.next_if(|candidate| *candidate < key).is_some() {}
        owned.next_if_eq(&key).is_some()
    })
}

/// Applies `op` to an in-memory table with the kernel's answers:
/// EEXIST for an existing service or destination, ESRCH for a missing
/// service, ENOENT for a missing destination (`ip_vs_genl_set_cmd`,
/// `ip_vs_add_dest`, `ip_vs_edit_dest`, `ip_vs_del_dest`).
pub fn apply_in_memory(table: &mut Table, op: &Op) -> Result<(), IpvsError> {
    let errno = match op {
        Op::AddService { key, service } => {
            if table.services.contains_key(key) {
                libc::EEXIST
            } else {
                table.insert_service(*key, service.clone());
                return Ok(());
            }
        }
        Op::SetService { key, service } => match table.services.get_mut(key) {
            Some((existing, _)) => {
                *existing = service.clone();
                return Ok(());
            }
            None => libc::ESRCH,
        },
        Op::DelService { key } => match table.services.remove(key) {
            Some(_) => return Ok(()),
            None => libc::ESRCH,
        },
        Op::AddDest { service, key, dest } => match table.services.get_mut(service) {
            None => libc::ESRCH,
            Some((_, dests)) if dests.contains_key(key) => libc::EEXIST,
            Some((_, dests)) => {
                dests.insert(*key, *dest);
                return Ok(());
            }
        },
        Op::SetDest { service, key, dest } => match table.services.get_mut(service) {
            None => libc::ESRCH,
            Some((_, dests)) => match dests.get_mut(key) {
                Some(existing) => {
                    *existing = *dest;
                    return Ok(());
                }
                None => libc::ENOENT,
            },
        },
        Op::DelDest { service, key } => match table.services.get_mut(service) {
            None => libc::ESRCH,
            Some((_, dests)) => match dests.remove(key) {
                Some(_) => return Ok(()),
                None => libc::ENOENT,
            },
        },
    };
    Err(IpvsError::for_op(op, errno))
}

/// A rule that makes [`MemoryApplier`] refuse matching ops with an errno.
type FailureRule = Box<dyn Fn(&Op) -> Option<i32> + Send>;

/// An in-memory kernel: a [`Table`] changed by [`apply_in_memory`], with
/// optional injected failures and a count of what was asked of it.
pub struct MemoryApplier {
    /// The "kernel" table.
    pub table: Table,
    /// Every op applied (or attempted), in order.
    pub log: Vec<Op>,
    /// Number of `read_table` calls.
    pub reads: usize,
    failure_rules: Vec<FailureRule>,
}

impl std::fmt::Debug for MemoryApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryApplier")
            .field("table", &self.table)
            .field("log", &self.log)
            .field("reads", &self.reads)
            .finish_non_exhaustive()
    }
}

impl MemoryApplier {
    /// A kernel holding `table`.
    pub fn new(table: Table) -> Self {
        MemoryApplier {
            table,
            log: Vec::new(),
            reads: 0,
            failure_rules: Vec::new(),
        }
    }

    /// From now on, ops for which `rule` returns an errno fail with it
    /// (without changing the table).
    pub fn fail_when(&mut self, rule: impl Fn(&Op) -> Option<i32> + Send + 'static) {
        self.failure_rules.push(Box::new(rule));
    }

    /// Removes every failure rule.
    pub fn clear_failures(&mut self) {
        self.failure_rules.clear();
    }
}

impl Applier for MemoryApplier {
    async fn read_table(&mut self) -> Result<Table, IpvsError> {
        self.reads += 1;
        Ok(self.table.clone())
    }

    async fn apply(&mut self, ops: Arc<Vec<Op>>) -> Vec<Result<(), IpvsError>> {
        ops.iter()
            .map(|op| {
                self.log.push(op.clone());
                if let Some(errno) = self.failure_rules.iter().find_map(|rule| rule(op)) {
                    return Err(IpvsError::for_op(op, errno));
                }
                apply_in_memory(&mut self.table, op)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::model::{DestKey, Destination, Forwarding, Protocol, Service};

    fn tcp(last: u8) -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            port: 80,
        }
    }

    fn rs(last: u8) -> DestKey {
        DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 80)
    }

    fn dr(weight: u32) -> Destination {
        Destination::new(Forwarding::DirectRoute, weight)
    }

    fn desired() -> Table {
        let mut table = Table::new();
        for service in [tcp(10), tcp(11)] {
            table.insert_service(service, Service::new("wrr"));
            for last in 1..=4 {
                table.insert_dest(&service, rs(last), dr(1));
            }
        }
        table
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// A kernel in memory whose change detection the test decides: its `read_since`
    /// returns `known` unread when `unchanged` is set, as the drift reader does when the
    /// text view shows nothing changed.
    struct Detecting {
        kernel: MemoryApplier,
        unchanged: bool,
        last_unchanged: bool,
    }

    impl Applier for Detecting {
        async fn read_table(&mut self) -> Result<Table, IpvsError> {
            self.kernel.read_table().await
        }

        async fn read_since(&mut self, known: Option<Arc<Table>>) -> Result<Arc<Table>, IpvsError> {
            self.last_unchanged = false;
            match known {
                Some(known) if self.unchanged => {
                    self.last_unchanged = true;
                    Ok(known)
                }
                _ => self.kernel.read_table().await.map(Arc::new),
            }
        }

        fn unchanged_since_known(&self) -> bool {
            self.last_unchanged
        }

        async fn apply(&mut self, ops: Arc<Vec<Op>>) -> Vec<Result<(), IpvsError>> {
            self.kernel.apply(ops).await
        }
    }

    /// A service deleted from the kernel behind the reconciler's back.
    fn delete_by_hand(reconciler: &mut Reconciler<Detecting>, key: ServiceKey) {
        reconciler.applier_mut().kernel.table.services.remove(&key);
    }

    #[test]
    fn a_recheck_compares_nothing_when_the_kernel_is_unchanged_and_repairs_when_it_changed() {
        block_on(async {
            let mut reconciler = Reconciler::new(Detecting {
                kernel: MemoryApplier::new(Table::new()),
                unchanged: false,
                last_unchanged: false,
            });
            let desired = desired();
            // The first round has nothing known: a full read and the whole table.
            let first = reconciler.recheck(&desired).await.unwrap();
            assert_eq!(first.applied(), 10);
            assert_eq!(reconciler.applier().kernel.table, desired);

            // Deleted by hand, but the reader saw no change: no comparison, no op (what
            // the text view does not show is not repaired: the documented limit).
            delete_by_hand(&mut reconciler, tcp(10));
            reconciler.applier_mut().unchanged = true;
            let skipped = reconciler.recheck(&desired).await.unwrap();
            assert!(skipped.was_in_sync());
            assert!(!reconciler
                .applier()
                .kernel
                .table
                .services
                .contains_key(&tcp(10)));

            // The reader sees the change: repaired.
            reconciler.applier_mut().unchanged = false;
            let repaired = reconciler.recheck(&desired).await.unwrap();
            assert_eq!(repaired.applied(), 5, "the service and its 4 destinations");
            assert_eq!(reconciler.applier().kernel.table, desired);

            // After a failed operation nothing is known: the next recheck compares,
            // whatever the reader says.
            delete_by_hand(&mut reconciler, tcp(11));
            reconciler
                .applier_mut()
                .kernel
                .fail_when(|op| matches!(op, Op::AddService { .. }).then_some(libc::ENOMEM));
            let failed = reconciler.recheck(&desired).await.unwrap();
            assert_eq!(
                failed.failures.len(),
                5,
                "the service, then its destinations"
            );
            reconciler.applier_mut().kernel.clear_failures();
            reconciler.applier_mut().unchanged = true;
            let retried = reconciler.recheck(&desired).await.unwrap();
            assert_eq!(retried.applied(), 5);
            assert_eq!(reconciler.applier().kernel.table, desired);
        });
    }

    #[test]
    fn the_kernel_as_known_is_the_desired_table_itself_when_they_are_equal() {
        block_on(async {
            let known = |r: &Reconciler<MemoryApplier>| r.known.clone().expect("known");
            let mut reconciler = Reconciler::new(MemoryApplier::new(Table::new()));
            let first = Arc::new(desired());
            reconciler.reconcile(&first).await.unwrap();
            assert!(
                Arc::ptr_eq(&known(&reconciler), &first),
                "one copy, not two"
            );
            // A reload changing one weight: one operation, and the new table is the known one.
            let mut next = (*first).clone();
            next.insert_dest(&tcp(10), rs(1), dr(5));
            let next = Arc::new(next);
            let report = reconciler.apply_change(&next).await.unwrap();
            assert_eq!(report.ops.len(), 1);
            assert!(Arc::ptr_eq(&known(&reconciler), &next));
            assert_eq!(reconciler.applier().table, *next);
            // A service of someone else's in the kernel: the kernel is not the desired
            // table, so the reconciler keeps its own copy, with that service in it.
            reconciler
                .applier_mut()
                .table
                .insert_service(tcp(99), Service::new("rr"));
            let report = reconciler.reconcile(&next).await.unwrap();
            assert!(report.was_in_sync(), "never touches what it does not own");
            let kept = known(&reconciler);
            assert!(!Arc::ptr_eq(&kept, &next));
            assert!(kept.services.contains_key(&tcp(99)));
            // A plain table is never shared.
            let mut plain = Reconciler::new(MemoryApplier::new(Table::new()));
            plain.reconcile(&desired()).await.unwrap();
            assert_eq!(*known(&plain), desired());
        });
    }

    #[test]
    fn with_a_service_of_someone_elses_in_the_kernel_a_reload_keeps_its_own_copy() {
        block_on(async {
            let known = |r: &Reconciler<MemoryApplier>| r.known.clone().expect("known");
            let mut kernel = Table::new();
            kernel.insert_service(tcp(99), Service::new("rr"));
            let mut reconciler = Reconciler::new(MemoryApplier::new(kernel));
            let first = Arc::new(desired());
            reconciler.reconcile(&first).await.unwrap();
            let mut next = (*first).clone();
            next.insert_dest(&tcp(10), rs(1), dr(5));
            let next = Arc::new(next);
            let report = reconciler.apply_change(&next).await.unwrap();
            assert_eq!(report.ops.len(), 1);
            // The kernel is the new table plus the other service: known as such, not
            // as the desired table.
            let kept = known(&reconciler);
            assert!(!Arc::ptr_eq(&kept, &next));
            assert_eq!(*kept, reconciler.applier().table);
            assert!(kept.services.contains_key(&tcp(99)));
            // And a refused operation leaves nothing known: the next round reads.
            reconciler.applier_mut().fail_when(|_| Some(libc::EINVAL));
            let mut third = (*next).clone();
            third.insert_dest(&tcp(10), rs(1), dr(6));
            let report = reconciler.apply_change(&Arc::new(third)).await.unwrap();
            assert_eq!(report.failures.len(), 1);
            assert!(reconciler.known.is_none());
        });
    }

    #[test]
    fn owns_all_walks_both_sorted_lists() {
        let owned: BTreeSet<ServiceKey> = [tcp(2), tcp(4), tcp(6)].into();
        assert!(owns_all(&owned, &[tcp(2), tcp(6)]));
        assert!(owns_all(&owned, &[]));
        assert!(
            !owns_all(&owned, &[tcp(2), tcp(3), tcp(6)]),
            "one missing between"
        );
        assert!(!owns_all(&owned, &[tcp(1)]), "before the first");
        assert!(!owns_all(&owned, &[tcp(6), tcp(7)]), "after the last");
        assert!(!owns_all(&BTreeSet::new(), &[tcp(1)]));
    }

    #[test]
    fn programs_an_empty_kernel_then_makes_zero_changes() {
        block_on(async {
            let mut reconciler = Reconciler::new(MemoryApplier::new(Table::new()));
            let report = reconciler.reconcile(&desired()).await.unwrap();
            assert_eq!(report.ops.len(), 10);
            assert!(report.failures.is_empty());
            assert_eq!(reconciler.applier().table, desired());
            let again = reconciler.reconcile(&desired()).await.unwrap();
            assert!(again.was_in_sync());
        });
    }

    #[test]
    fn a_restarted_reconciler_adopts_the_table_without_changes() {
        block_on(async {
            let mut reconciler = Reconciler::new(MemoryApplier::new(desired()));
            let report = reconciler.reconcile(&desired()).await.unwrap();
            assert!(report.was_in_sync());
            assert!(
                reconciler.applier().log.is_empty(),
                "nothing flushed or re-added"
            );
            assert_eq!(reconciler.applier().reads, 1);
        });
    }

    #[test]
    fn drift_made_by_hand_is_repaired_on_the_next_reconcile() {
        block_on(async {
            let mut reconciler = Reconciler::new(MemoryApplier::new(Table::new()));
            reconciler.reconcile(&desired()).await.unwrap();
            // "ipvsadm -d" of one destination, "ipvsadm -a" of another.
            let kernel = &mut reconciler.applier_mut().table;
            kernel.services.get_mut(&tcp(10)).unwrap().1.remove(&rs(1));
            kernel.insert_dest(&tcp(11), rs(9), dr(5));
            let report = reconciler.reconcile(&desired()).await.unwrap();
            assert_eq!(report.ops.len(), 2, "{:?}", report.ops);
            assert_eq!(reconciler.applier().table, desired());
        });
    }

    #[test]
    fn a_reload_changing_one_weight_applies_one_op_without_reading_the_kernel() {
        block_on(async {
            let mut reconciler = Reconciler::new(MemoryApplier::new(Table::new()));
            reconciler.reconcile(&desired()).await.unwrap();
            let reads = reconciler.applier().reads;
            let applied = reconciler.applier().log.len();
            let mut reloaded = desired();
            reloaded.insert_dest(&tcp(11), rs(2), dr(7));
            let report = reconciler.apply_change(&reloaded).await.unwrap();
            let log = &reconciler.applier().log[applied..];
            assert_eq!(log.len(), 1, "{log:?}");
            assert!(matches!(log[0], Op::SetDest { .. }), "{log:?}");
            assert_eq!(reconciler.applier().reads, reads, "no read on reload");
            assert_eq!(report.applied(), 1);
            assert_eq!(reconciler.applier().table, reloaded);
        });
    }

    #[test]
    fn drift_made_before_a_reload_is_left_to_the_next_reconcile() {
        block_on(async {
            let mut reconciler = Reconciler::new(MemoryApplier::new(Table::new()));
            reconciler.reconcile(&desired()).await.unwrap();
            reconciler.applier_mut().table.services.remove(&tcp(10));
            let mut reloaded = desired();
            reloaded.insert_dest(&tcp(11), rs(2), dr(7));
            reconciler.apply_change(&reloaded).await.unwrap();
            assert!(!reconciler.applier().table.services.contains_key(&tcp(10)));
            let report = reconciler.reconcile(&reloaded).await.unwrap();
            assert_eq!(report.applied(), 5, "the service and its 4 destinations");
            assert_eq!(reconciler.applier().table, reloaded);
        });
    }

    #[test]
    fn after_a_failed_op_a_reload_reads_the_kernel_again() {
        block_on(async {
            let mut applier = MemoryApplier::new(Table::new());
            applier.fail_when(|op| (op.dest_key() == Some(&rs(3))).then_some(libc::ERANGE));
            let mut reconciler = Reconciler::new(applier);
            reconciler.reconcile(&desired()).await.unwrap();
            reconciler.applier_mut().clear_failures();
            let reads = reconciler.applier().reads;
            reconciler.apply_change(&desired()).await.unwrap();
            assert_eq!(reconciler.applier().reads, reads + 1);
            assert_eq!(reconciler.applier().table, desired());
        });
    }

    #[test]
    fn foreign_services_are_left_alone_and_dropped_owned_ones_deleted() {
        block_on(async {
            let mut kernel = desired();
            kernel.insert_service(tcp(99), Service::new("lc"));
            kernel.insert_dest(&tcp(99), rs(7), dr(1));
            let mut reconciler = Reconciler::new(MemoryApplier::new(kernel));
            assert!(reconciler
                .reconcile(&desired())
                .await
                .unwrap()
                .was_in_sync());

            // The configuration drops tcp(11): owned, so deleted; tcp(99) stays.
            let mut smaller = desired();
            smaller.services.remove(&tcp(11));
            let report = reconciler.reconcile(&smaller).await.unwrap();
            assert_eq!(report.ops.last(), Some(&Op::DelService { key: tcp(11) }));
            let table = &reconciler.applier().table;
            assert!(table.services.contains_key(&tcp(99)));
            assert!(!table.services.contains_key(&tcp(11)));
            assert!(!reconciler.owned().contains(&tcp(11)));
        });
    }

    #[test]
    fn one_failing_op_is_reported_with_its_destination_and_the_rest_still_apply() {
        block_on(async {
            let mut applier = MemoryApplier::new(Table::new());
            applier.fail_when(|op| (op.dest_key() == Some(&rs(3))).then_some(libc::ERANGE));
            let mut reconciler = Reconciler::new(applier);
            let report = reconciler.reconcile(&desired()).await.unwrap();
            assert_eq!(report.failures.len(), 2);
            assert_eq!(report.applied(), 8);
            let message = report.failures[0].error.to_string();
            assert!(
                message.starts_with("add destination 10.0.0.3:80 of service TCP 192.0.2.10:80"),
                "{message}"
            );
            assert_eq!(reconciler.applier().table.dest_count(), 6);

            // Once the cause is gone, the next round adds exactly what is missing.
            reconciler.applier_mut().clear_failures();
            let report = reconciler.reconcile(&desired()).await.unwrap();
            assert_eq!(report.ops.len(), 2);
            assert!(report.failures.is_empty());
            assert_eq!(reconciler.applier().table, desired());
        });
    }

    #[test]
    fn in_memory_kernel_answers_like_the_real_one() {
        let mut table = Table::new();
        let add = Op::AddService {
            key: tcp(1),
            service: Service::new("rr"),
        };
        apply_in_memory(&mut table, &add).unwrap();
        assert!(matches!(
            apply_in_memory(&mut table, &add),
            Err(IpvsError::ServiceExists { .. })
        ));
        let add_dest = Op::AddDest {
            service: tcp(2),
            key: rs(1),
            dest: dr(1),
        };
        assert!(matches!(
            apply_in_memory(&mut table, &add_dest),
            Err(IpvsError::NoSuchService { .. })
        ));
        let del_dest = Op::DelDest {
            service: tcp(1),
            key: rs(1),
        };
        assert!(matches!(
            apply_in_memory(&mut table, &del_dest),
            Err(IpvsError::NoSuchDest { .. })
        ));
    }
}
