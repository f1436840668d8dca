//! Runs many checks from ONE task: a binary heap of deadlines, one `Sleep` reset only when
//! the earliest deadline changes, a `JoinSet` of the runs in flight (bounded by
//! `max_in_flight`), and a table of [`HealthState`]s. Transitions go out on a channel as
//! [`Event`]s. First runs are spread uniformly over `warmup` (or `delay_loop`), so 10,000
//! checks added at once never fire in one burst.
//!
//! The checks live in a list of slots, each check at the place its [`CheckId`] names (the
//! caller numbers its checks densely, so no index by id is needed), and a deadline is 16
//! bytes (a due time in microseconds, the slot, the slot's generation): at 40,000 checks a
//! map of whole entries, sized to the next power of two, and 32-byte deadlines cost about
//! 200 bytes a check; this costs about 100 (a hash map from id to slot cost 28 more).
//! [`SchedulerHandle::reserve`] sizes the list exactly before a burst of adds.
//!
//! Checks are added and removed at run time through the [`SchedulerHandle`] (reload adds or
//! removes only what changed); a removed check's run in flight is aborted (dropping a
//! `MISC_CHECK` future kills its process group).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::state::{CheckTiming, HealthState, Transition};
use crate::{CheckOutcome, Checker};

/// The caller's name for a check (the wiring maps it to virtual server / real server / kind).
/// Its low 32 bits are the check's place in the scheduler's list ([`CheckId::slot`]): a
/// caller numbers its checks densely from 0, as a list of slots does, and two checks
/// scheduled at once never share a slot (adding one replaces the other). The high 32 bits
/// are the caller's own (the wiring counts each slot's uses there, so a late event of a
/// check stopped since is not taken for its successor's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId(pub u64);

impl CheckId {
    /// The check's place in the scheduler's list: the id's low 32 bits.
    pub fn slot(self) -> u32 {
        // Truncation intended: the low half.
        self.0 as u32
    }
}

/// A transition of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which check.
    pub id: CheckId,
    /// What changed.
    pub transition: Transition,
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// At most this many runs in flight; further due checks wait (their lateness grows and
    /// shows in [`StatsSnapshot::max_lateness`]).
    pub max_in_flight: usize,
    /// Seed of the jitter generator (`None`: from the clock). Tests fix it.
    pub seed: Option<u64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_in_flight: 2048,
            seed: None,
        }
    }
}

/// Counters the scheduler keeps (for metrics and the benchmark).
#[derive(Debug, Default)]
struct Stats {
    runs_started: AtomicU64,
    runs_finished: AtomicU64,
    max_lateness_us: AtomicU64,
    checks: AtomicU64,
}

/// A copy of the scheduler's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Runs started since the start (or the last [`SchedulerHandle::reset_max_lateness`]
    /// for the lateness only).
    pub runs_started: u64,
    /// Runs finished (including aborted-by-panic ones).
    pub runs_finished: u64,
    /// Worst `actual start − due time` seen.
    pub max_lateness: Duration,
    /// Checks currently scheduled.
    pub checks: u64,
}

enum Command {
    Reserve(usize),
    Add(Vec<NewCheck>),
    Remove {
        id: CheckId,
    },
    Rebind(Vec<(CheckId, Arc<dyn Checker>)>),
    Shutdown {
        omega: bool,
        done: oneshot::Sender<()>,
    },
}

/// A check for [`SchedulerHandle::add_all`].
pub struct NewCheck {
    /// The caller's name for it.
    pub id: CheckId,
    /// What it runs.
    pub checker: Arc<dyn Checker>,
    /// When, and how its results become up and down.
    pub timing: CheckTiming,
}

/// A new check's verdict before its first run: up unless `alpha` (keepalived: a checked
/// real server starts in the table unless `alpha` is set). Known without the scheduler.
pub fn initially_up(timing: &CheckTiming) -> bool {
    !timing.alpha
}

/// Reads a scheduler's counters ([`SchedulerHandle::stats_reader`]).
#[derive(Debug, Clone)]
pub struct StatsReader(Arc<Stats>);

impl StatsReader {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            runs_started: self.0.runs_started.load(Ordering::Relaxed),
            runs_finished: self.0.runs_finished.load(Ordering::Relaxed),
            max_lateness: Duration::from_micros(self.0.max_lateness_us.load(Ordering::Relaxed)),
            checks: self.0.checks.load(Ordering::Relaxed),
        }
    }
}

/// Handle to a running scheduler. Dropping every handle stops the scheduler (without omega).
#[derive(Clone)]
pub struct SchedulerHandle {
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Stats>,
}

impl SchedulerHandle {
    /// Add (or replace) a check. Returns its initial verdict ([`initially_up`]): the
    /// wiring puts the real server in the desired table iff this is true, then follows the
    /// events.
    pub fn add(&self, id: CheckId, checker: Arc<dyn Checker>, timing: CheckTiming) -> bool {
        let initial = initially_up(&timing);
        self.add_all(vec![NewCheck {
            id,
            checker,
            timing,
        }]);
        initial
    }

    /// Add (or replace) every check of `checks` (their verdicts: [`initially_up`]). A
    /// start or a reload adds thousands at once: one command for all of them. Sent one by
    /// one, and answered each (the scheduler's task computed the verdict), a start of
    /// 40,000 checks waited for that task 40,000 times (45 ms of the start natively); sent
    /// one by one unanswered, the queued commands took 4.5 MB of channel blocks between
    /// the checkers being built, and 2.4 MB of it stayed resident once freed.
    pub fn add_all(&self, checks: Vec<NewCheck>) {
        if !checks.is_empty() {
            let _ = self.commands.send(Command::Add(checks));
        }
    }

    /// Room for `more` checks beyond those scheduled, before a burst of [`add`]s (a start
    /// or a reload adds thousands at once): the scheduler's list is then sized exactly
    /// instead of doubling past the need.
    ///
    /// [`add`]: SchedulerHandle::add
    pub fn reserve(&self, more: usize) {
        let _ = self.commands.send(Command::Reserve(more));
    }

    /// Hands each kept check of `checks` a new checker with the same settings (a reload's:
    /// an `HTTP_GET` runs from the running model's settings, and the replaced model's go
    /// only once nothing runs from them). Its state, its schedule and a run in flight are
    /// untouched; its next run uses the new checker. An id no longer scheduled is ignored.
    pub fn rebind_all(&self, checks: Vec<(CheckId, Arc<dyn Checker>)>) {
        if !checks.is_empty() {
            let _ = self.commands.send(Command::Rebind(checks));
        }
    }

    /// Remove a check; a run in flight is aborted. No event is sent for it.
    pub fn remove(&self, id: CheckId) {
        let _ = self.commands.send(Command::Remove { id });
    }

    /// Stop every check. With `omega` (keepalived), checks still up first emit `Down`.
    pub async fn shutdown(&self, omega: bool) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { omega, done: tx })
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats_reader().snapshot()
    }

    /// A reader of the scheduler's counters that does not keep the scheduler running (a
    /// handle does), for the daemon's metrics.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader(self.stats.clone())
    }

    /// Forget the worst lateness seen so far (e.g. after a warm-up period).
    pub fn reset_max_lateness(&self) {
        self.stats.max_lateness_us.store(0, Ordering::Relaxed);
    }
}

/// Start a scheduler on the current tokio runtime. Transitions go to `events`.
pub fn spawn_scheduler(
    config: SchedulerConfig,
    events: mpsc::UnboundedSender<Event>,
) -> (SchedulerHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Stats::default());
    let seed = config.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9)
    });
    let core = Core::new(config.max_in_flight, seed, events, stats.clone());
    let join = tokio::spawn(core.run(rx));
    (
        SchedulerHandle {
            commands: tx,
            stats,
        },
        join,
    )
}

/// splitmix64: a tiny, good-enough generator for jitter (no dependency).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)` (microsecond resolution).
    fn duration_below(&mut self, max: Duration) -> Duration {
        let us = max.as_micros() as u64;
        if us == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.next() % us)
        }
    }
}

/// A check's place in [`Core::slots`].
type Slot = u32;

struct Entry {
    id: CheckId,
    checker: Arc<dyn Checker>,
    state: HealthState,
    /// Distinguishes this entry from an earlier one in the same slot (replace / remove).
    generation: u32,
    running: Option<AbortHandle>,
}

/// The entry in `slot`, if it is still the one of `generation` (a deadline or a run of an
/// entry removed since, whose slot may be taken again, finds nothing).
fn current_entry(slots: &mut [Option<Entry>], slot: Slot, generation: u32) -> Option<&mut Entry> {
    slots
        .get_mut(slot as usize)?
        .as_mut()
        .filter(|entry| entry.generation == generation)
}

/// When a check is due: microseconds since [`Core::epoch`], its slot and the generation of
/// the entry it was pushed for. Ordered by due time first.
type Deadline = (u64, Slot, u32);

struct Finished {
    slot: Slot,
    generation: u32,
    started: Instant,
    outcome: CheckOutcome,
}

struct Core {
    max_in_flight: usize,
    rng: SplitMix64,
    /// The checks, each at its id's slot; a removed check's slot is vacant until the
    /// caller names it again.
    slots: Vec<Option<Entry>>,
    /// How many slots hold a check.
    live: usize,
    /// Stale items (the slot's entry has another generation, or runs) are skipped when
    /// popped.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    /// The zero of the deadlines' due times.
    epoch: Instant,
    running: JoinSet<Finished>,
    running_ids: HashMap<tokio::task::Id, (Slot, u32, Instant)>,
    events: mpsc::UnboundedSender<Event>,
    stats: Arc<Stats>,
    next_generation: u32,
    /// One copy of each distinct timing, shared by the checks' states (40,000 checks
    /// usually have a handful of timings); dropped when its last check goes.
    timings: HashSet<Arc<CheckTiming>>,
}

impl Core {
    fn new(
        max_in_flight: usize,
        seed: u64,
        events: mpsc::UnboundedSender<Event>,
        stats: Arc<Stats>,
    ) -> Self {
        Core {
            max_in_flight: max_in_flight.max(1),
            rng: SplitMix64(seed),
            slots: Vec::new(),
            live: 0,
            deadlines: BinaryHeap::new(),
            epoch: Instant::now(),
            running: JoinSet::new(),
            running_ids: HashMap::new(),
            events,
            stats,
            next_generation: 0,
            timings: HashSet::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let sleep = tokio::time::sleep_until(Instant::now() + Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            self.start_due(Instant::now());
            // The one timer: the earliest deadline, unless the in-flight bound is reached
            // (then a finishing run wakes us).
            let want = if self.running.len() < self.max_in_flight {
                self.deadlines
                    .peek()
                    .map(|Reverse((due, _, _))| self.instant(*due))
            } else {
                None
            };
            if want != armed {
                if let Some(due) = want {
                    sleep.as_mut().reset(due);
                }
                armed = want;
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Reserve(more)) => self.reserve(more),
                    Some(Command::Add(checks)) => {
                        for NewCheck { id, checker, timing } in checks {
                            self.add(id, checker, timing);
                        }
                    }
                    Some(Command::Remove { id }) => self.remove(id),
                    Some(Command::Rebind(checks)) => {
                        for (id, checker) in checks {
                            self.rebind(id, checker);
                        }
                    }
                    Some(Command::Shutdown { omega, done }) => {
                        self.shutdown(omega);
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown(false);
                        return;
                    }
                },
                Some(result) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.finished(result);
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                }
            }
        }
    }

    fn add(&mut self, id: CheckId, checker: Arc<dyn Checker>, timing: CheckTiming) {
        let slot = id.slot();
        // The same id, or another use of the slot the caller has not removed: replaced.
        self.vacate(slot);
        let first_delay = self.rng.duration_below(timing.first_run_spread());
        let timing = match self.timings.get(&timing) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = Arc::new(timing);
                self.timings.insert(Arc::clone(&shared));
                shared
            }
        };
        let state = HealthState::new(timing, Instant::now().into_std(), first_delay);
        debug_assert_eq!(
            state.is_up(),
            initially_up(state.timing()),
            "the verdict given"
        );
        let due = self.micros(Instant::from_std(state.poll_timeout()));
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let entry = Entry {
            id,
            checker,
            state,
            generation,
            running: None,
        };
        let at = slot as usize;
        debug_assert!(
            at <= self.slots.len() + (1 << 20),
            "check ids are numbered densely: slot {at} after {} slots",
            self.slots.len()
        );
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        self.slots[at] = Some(entry);
        self.live += 1;
        self.deadlines.push(Reverse((due, slot, generation)));
        self.stats.checks.store(self.live as u64, Ordering::Relaxed);
    }

    fn reserve(&mut self, more: usize) {
        let vacant = self.slots.len() - self.live;
        self.slots.reserve_exact(more.saturating_sub(vacant));
        self.deadlines.reserve_exact(more);
    }

    /// `at` as microseconds since the epoch (0 before it).
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn instant(&self, micros: u64) -> Instant {
        self.epoch + Duration::from_micros(micros)
    }

    /// Check `id`'s next runs use `checker`, if `id` is the one in its slot.
    fn rebind(&mut self, id: CheckId, checker: Arc<dyn Checker>) {
        let entry = self
            .slots
            .get_mut(id.slot() as usize)
            .and_then(Option::as_mut);
        if let Some(entry) = entry.filter(|entry| entry.id == id) {
            entry.checker = checker;
        }
    }

    /// Stops check `id` if it is the one in its slot (not a later use of the slot).
    fn remove(&mut self, id: CheckId) {
        let slot = id.slot();
        let is_its = self.slots.get(slot as usize).and_then(Option::as_ref);
        if is_its.is_some_and(|entry| entry.id == id) {
            self.vacate(slot);
        }
    }

    /// Stops the check in `slot`, if any: its run in flight is aborted, and its timing is
    /// dropped if no other check has it.
    fn vacate(&mut self, slot: Slot) {
        let entry = self.slots.get_mut(slot as usize).and_then(Option::take);
        if let Some(entry) = entry {
            self.live -= 1;
            if let Some(abort) = &entry.running {
                abort.abort();
            }
            let timing = Arc::clone(entry.state.shared_timing());
            drop(entry);
            // Held by the set and here only: no check has this timing any more.
            if Arc::strong_count(&timing) == 2 {
                self.timings.remove(&*timing);
            }
        }
        self.stats.checks.store(self.live as u64, Ordering::Relaxed);
    }

    fn shutdown(&mut self, omega: bool) {
        self.running.abort_all();
        let mut entries: Vec<&mut Entry> = self.slots.iter_mut().flatten().collect();
        entries.sort_by_key(|entry| entry.id);
        for entry in entries {
            if let Some(transition) = entry.state.handle_shutdown(omega) {
                let _ = self.events.send(Event {
                    id: entry.id,
                    transition,
                });
            }
        }
        self.slots.clear();
        self.live = 0;
        self.timings.clear();
    }

    fn start_due(&mut self, now: Instant) {
        while self.running.len() < self.max_in_flight {
            let Some(&Reverse((due, slot, generation))) = self.deadlines.peek() else {
                return;
            };
            let now_micros = self.micros(now);
            if due > now_micros {
                return;
            }
            self.deadlines.pop();
            // A field borrow: `self.running` and `self.stats` are used beside it.
            let Some(entry) = current_entry(&mut self.slots, slot, generation) else {
                continue;
            };
            if entry.running.is_some() {
                continue;
            }
            let lateness = now_micros - due;
            self.stats
                .max_lateness_us
                .fetch_max(lateness, Ordering::Relaxed);
            self.stats.runs_started.fetch_add(1, Ordering::Relaxed);
            let checker = entry.checker.clone();
            let started = now;
            let abort = self.running.spawn(async move {
                let outcome = checker.check().await;
                Finished {
                    slot,
                    generation,
                    started,
                    outcome,
                }
            });
            let task = abort.id();
            entry.running = Some(abort);
            self.running_ids.insert(task, (slot, generation, started));
        }
    }

    fn finished(&mut self, result: Result<(tokio::task::Id, Finished), tokio::task::JoinError>) {
        self.stats.runs_finished.fetch_add(1, Ordering::Relaxed);
        let finished = match result {
            Ok((task, finished)) => {
                self.running_ids.remove(&task);
                finished
            }
            Err(error) => {
                let Some((slot, generation, started)) = self.running_ids.remove(&error.id()) else {
                    return;
                };
                if error.is_cancelled() {
                    return; // removed or replaced: its entry is gone
                }
                Finished {
                    slot,
                    generation,
                    started,
                    outcome: CheckOutcome::Down(format!("checker panicked: {error}")),
                }
            }
        };
        let Some(entry) = current_entry(&mut self.slots, finished.slot, finished.generation) else {
            return;
        };
        entry.running = None;
        let now = Instant::now();
        let transition = entry.state.handle_outcome(
            finished.started.into_std(),
            now.into_std(),
            &finished.outcome,
        );
        let due = Instant::from_std(entry.state.poll_timeout());
        let (id, kind) = (entry.id, entry.checker.kind());
        if let Some(transition) = transition {
            tracing::info!(check = id.0, kind, ?transition, "health check transition");
            let _ = self.events.send(Event { id, transition });
        }
        let due = self.micros(due);
        self.deadlines
            .push(Reverse((due, finished.slot, finished.generation)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check that never finishes (these tests start none).
    struct Pending;

    impl Checker for Pending {
        fn check(&self) -> crate::CheckFuture<'_> {
            Box::pin(std::future::pending())
        }

        fn kind(&self) -> &'static str {
            "PENDING"
        }
    }

    /// A run's result for `slot` of `generation`, as the `JoinSet` hands it back.
    fn finished_run(slot: Slot, generation: u32) -> (tokio::task::Id, Finished) {
        let task = tokio::spawn(async {}).id();
        let finished = Finished {
            slot,
            generation,
            started: Instant::now(),
            outcome: CheckOutcome::Down("refused".into()),
        };
        (task, finished)
    }

    #[tokio::test]
    async fn a_slot_taken_again_ignores_the_late_result_of_its_previous_check() {
        let (events, mut received) = mpsc::unbounded_channel();
        let mut core = Core::new(4, 1, events, Arc::default());
        // One failed run is a transition to down.
        let timing = CheckTiming {
            retry: 0,
            ..CheckTiming::default()
        };
        // Check 2 is slot 0's second use (as the wiring numbers its checks).
        let (first, second) = (CheckId(0), CheckId(1 << 32));
        core.add(first, Arc::new(Pending), timing.clone());
        let slot = first.slot();
        let first_generation = core.slots[slot as usize].as_ref().unwrap().generation;
        core.remove(first);
        core.add(second, Arc::new(Pending), timing);
        assert_eq!(second.slot(), slot, "the vacant slot is taken again");
        assert_eq!(core.slots.len(), 1);
        // A late remove of check 1 leaves check 2 alone.
        core.remove(first);
        assert!(core.slots[slot as usize].is_some());
        assert_eq!(core.live, 1);
        let deadlines = core.deadlines.len();

        // Check 1's run ends after it was removed: its failure is not check 2's.
        core.finished(Ok(finished_run(slot, first_generation)));
        assert!(received.try_recv().is_err());
        assert_eq!(core.deadlines.len(), deadlines, "no deadline pushed for it");
        assert!(core.slots[slot as usize].as_ref().unwrap().state.is_up());

        // Check 2's own failure is reported, under its own id.
        let generation = core.slots[slot as usize].as_ref().unwrap().generation;
        core.finished(Ok(finished_run(slot, generation)));
        let event = received.try_recv().expect("check 2's transition");
        assert_eq!(event.id, second);
        assert!(matches!(event.transition, Transition::Down { .. }));
        assert_eq!(core.deadlines.len(), deadlines + 1, "check 2 due again");
    }

    #[tokio::test]
    async fn a_rebound_check_keeps_its_state_and_schedule_and_its_next_run_is_the_new_checkers() {
        let (events, mut received) = mpsc::unbounded_channel();
        let mut core = Core::new(4, 1, events, Arc::default());
        let timing = CheckTiming {
            retry: 0,
            ..CheckTiming::default()
        };
        let (kept, later_occupant) = (CheckId(0), CheckId(1 << 32));
        core.add(kept, Arc::new(Pending), timing);
        let slot = kept.slot();
        let generation = core.slots[slot as usize].as_ref().unwrap().generation;
        core.finished(Ok(finished_run(slot, generation)));
        assert!(received.try_recv().is_ok(), "down after its failed run");
        let deadlines = core.deadlines.len();

        let replacement: Arc<dyn Checker> = Arc::new(Pending);
        core.rebind(kept, Arc::clone(&replacement));
        let entry = core.slots[slot as usize].as_ref().unwrap();
        assert!(Arc::ptr_eq(&entry.checker, &replacement));
        assert_eq!(
            entry.generation, generation,
            "the same check, not a new one"
        );
        assert!(!entry.state.is_up(), "its verdict is kept");
        assert_eq!(core.deadlines.len(), deadlines, "its schedule is kept");

        // A rebind naming a later occupant of the slot leaves this check alone.
        core.rebind(later_occupant, Arc::new(Pending));
        let entry = core.slots[slot as usize].as_ref().unwrap();
        assert!(Arc::ptr_eq(&entry.checker, &replacement));
    }

    #[test]
    fn reserve_sizes_the_list_for_a_burst_of_adds() {
        let (events, _) = mpsc::unbounded_channel();
        let mut core = Core::new(1, 1, events, Arc::default());
        core.reserve(1000);
        assert!(core.slots.capacity() >= 1000);
        for id in 0..1000 {
            core.add(CheckId(id), Arc::new(Pending), CheckTiming::default());
        }
        assert_eq!(core.slots.capacity(), 1000, "sized exactly, not doubled");
        assert_eq!(core.live, 1000);
    }

    #[test]
    fn checks_of_one_timing_share_one_copy_until_the_last_one_goes() {
        let (events, _) = mpsc::unbounded_channel();
        let mut core = Core::new(1, 1, events, Arc::default());
        let common = CheckTiming::default();
        let rare = CheckTiming {
            rise: 2,
            ..CheckTiming::default()
        };
        core.add(CheckId(1), Arc::new(Pending), common.clone());
        core.add(CheckId(2), Arc::new(Pending), common.clone());
        core.add(CheckId(3), Arc::new(Pending), rare.clone());
        assert_eq!(core.timings.len(), 2);
        let timing = |core: &Core, id| {
            let slot = CheckId(id).slot() as usize;
            Arc::clone(core.slots[slot].as_ref().unwrap().state.shared_timing())
        };
        assert!(Arc::ptr_eq(&timing(&core, 1), &timing(&core, 2)));
        assert_eq!(*timing(&core, 3), rare);

        core.remove(CheckId(1));
        assert_eq!(core.timings.len(), 2, "check 2 still has the common timing");
        core.remove(CheckId(2));
        assert_eq!(core.timings.len(), 1);
        assert!(core.timings.contains(&rare));
        // Replaced with another timing: the rare one has no check left.
        core.add(CheckId(3), Arc::new(Pending), common.clone());
        assert_eq!(core.timings.len(), 1);
        assert!(core.timings.contains(&common));
    }
}
