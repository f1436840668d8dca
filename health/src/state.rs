//! The sans-IO health state of one check: keepalived's `retry` / `delay_before_retry` /
//! `delay_loop` / `alpha` / `omega` semantics plus `rise` / `fall` hysteresis, driven by
//! outcomes and the time. No sockets, no tokio, no `Instant::now()`: the scheduler (or a test
//! on a simulated clock) passes `now` in and reads [`HealthState::poll_timeout`] back.
//!
//! How one check moves (keepalived `check_misc.c` / `check_tcp.c`, the `retry_it` counter):
//!
//! ```text
//!            success: next run at started + delay_loop
//!   ┌─────┐  failure while up: retry_it < retry  → retry_it += 1, next at + delay_before_retry
//!   │ UP  │  failure while up: retry_it == retry → one failed *round*; after `fall` rounds → DOWN
//!   └─────┘
//!   ┌─────┐  failure while down: next at + delay_loop (no retries while down)
//!   │DOWN │  success while down: after `rise` consecutive successes → UP
//!   └─────┘
//! ```
//!
//! With the defaults (`rise = fall = 1`) this is exactly keepalived: a server that is up goes
//! down after `1 + retry` consecutive failed attempts, and a down server comes back on its
//! first success. `alpha` starts the check down ("until proven up"); without it the check
//! starts up, as keepalived adds real servers to IPVS at start. `omega` makes shutdown report
//! the servers still up as going down (keepalived runs their `notify_down`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::CheckOutcome;

/// Per-check timing and hysteresis (keepalived names). Build it from the config model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckTiming {
    /// `delay_loop`: time between the starts of two rounds.
    pub delay_loop: Duration,
    /// `retry` (`nb_get_retry` in old HTTP_GET configs): extra attempts, after a failure of
    /// a server that is up, before the round counts as failed.
    pub retry: u32,
    /// `delay_before_retry`: time between the start of a failed attempt and its retry.
    pub delay_before_retry: Duration,
    /// `warmup`: the first run happens after a random delay up to this; `None` spreads the
    /// first run over `delay_loop` instead (so thousands of checks never fire together).
    pub warmup: Option<Duration>,
    /// Consecutive successful runs needed to go from down to up (≥ 1).
    pub rise: u32,
    /// Consecutive failed rounds (each `1 + retry` attempts) needed to go from up to down (≥ 1).
    pub fall: u32,
    /// keepalived `alpha`: start down until a check proves the server up.
    pub alpha: bool,
}

impl Default for CheckTiming {
    /// keepalived's defaults: `delay_loop 60`, `retry 1`, `delay_before_retry 1`, no warmup,
    /// no alpha; rise and fall 1.
    fn default() -> Self {
        CheckTiming {
            delay_loop: Duration::from_secs(60),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: None,
            rise: 1,
            fall: 1,
            alpha: false,
        }
    }
}

impl CheckTiming {
    /// The largest delay before a check's first run: `warmup` if set, else `delay_loop`. The
    /// scheduler draws the actual first delay uniformly in `[0, first_run_spread)`.
    pub fn first_run_spread(&self) -> Duration {
        self.warmup.unwrap_or(self.delay_loop)
    }
}

/// A change of a check's verdict, as the IPVS / VRRP wiring needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The server became healthy. `weight` is the `misc_dynamic` weight last reported, if any
    /// (else the configured weight applies).
    Up {
        /// Dynamic weight from `MISC_CHECK` `misc_dynamic`, if one was reported.
        weight: Option<u32>,
    },
    /// The server became unhealthy; `reason` is the last failure's.
    Down {
        /// Why the last attempt failed.
        reason: String,
    },
    /// The server stays up but `misc_dynamic` asked for another weight.
    WeightChanged {
        /// The new weight (exit status − 2).
        weight: u32,
    },
}

/// The health state of one check. See the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// Shared: thousands of checks have the same timing, and a copy (64 bytes) would be
    /// the largest part of each check's state.
    timing: Arc<CheckTiming>,
    up: bool,
    /// keepalived `retry_it`: failed attempts so far in the current round while up.
    retry_it: u32,
    /// Failed rounds in a row while up (for `fall`).
    failed_rounds: u32,
    /// Successful runs in a row while down (for `rise`).
    successes: u32,
    /// Last `misc_dynamic` weight reported.
    weight: Option<u32>,
    next_due: Instant,
}

impl HealthState {
    /// A new check whose first run is due at `now + first_delay` (the scheduler draws
    /// `first_delay` in `[0, timing.first_run_spread())`).
    pub fn new(timing: impl Into<Arc<CheckTiming>>, now: Instant, first_delay: Duration) -> Self {
        let timing = timing.into();
        let up = !timing.alpha;
        HealthState {
            timing,
            up,
            retry_it: 0,
            failed_rounds: 0,
            successes: 0,
            weight: None,
            next_due: now + first_delay,
        }
    }

    /// Whether the check currently says "up" (before any run: `!alpha`).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The `misc_dynamic` weight last reported, if any.
    pub fn dynamic_weight(&self) -> Option<u32> {
        self.weight
    }

    /// The timing this state was built with.
    pub fn timing(&self) -> &CheckTiming {
        &self.timing
    }

    /// The shared timing (the scheduler keeps one copy of each distinct timing).
    pub(crate) fn shared_timing(&self) -> &Arc<CheckTiming> {
        &self.timing
    }

    /// When the next run is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_due
    }

    /// Feed the outcome of the run that started at `started` and finished at `now`. Returns
    /// the transition it causes, if any, and sets the next due time (measured from the
    /// run's start like keepalived's `last_ran`, but never earlier than `now`).
    pub fn handle_outcome(
        &mut self,
        started: Instant,
        now: Instant,
        outcome: &CheckOutcome,
    ) -> Option<Transition> {
        let mut delay = self.timing.delay_loop;
        let transition = match outcome {
            CheckOutcome::Up | CheckOutcome::UpWithWeight(_) => {
                self.retry_it = 0;
                self.failed_rounds = 0;
                let new_weight = match outcome {
                    // keepalived check_misc.c: exit 0 under misc_dynamic leaves the weight.
                    CheckOutcome::UpWithWeight(w) => Some(*w),
                    _ => self.weight,
                };
                let weight_changed = new_weight != self.weight;
                self.weight = new_weight;
                if self.up {
                    self.successes = 0;
                    match (weight_changed, new_weight) {
                        (true, Some(weight)) => Some(Transition::WeightChanged { weight }),
                        _ => None,
                    }
                } else {
                    self.successes += 1;
                    if self.successes >= self.timing.rise.max(1) {
                        self.successes = 0;
                        self.up = true;
                        Some(Transition::Up {
                            weight: self.weight,
                        })
                    } else {
                        None
                    }
                }
            }
            CheckOutcome::Down(reason) => {
                self.successes = 0;
                if !self.up {
                    // keepalived: no retries for a server that is already down.
                    None
                } else if self.retry_it < self.timing.retry {
                    self.retry_it += 1;
                    delay = self.timing.delay_before_retry;
                    None
                } else {
                    self.retry_it = 0;
                    self.failed_rounds += 1;
                    if self.failed_rounds >= self.timing.fall.max(1) {
                        self.failed_rounds = 0;
                        self.up = false;
                        Some(Transition::Down {
                            reason: reason.clone(),
                        })
                    } else {
                        None
                    }
                }
            }
        };
        self.next_due = (started + delay).max(now);
        transition
    }

    /// Daemon shutdown. keepalived `omega`: report the servers still up as going down (so
    /// their `notify_down` runs and quorum is recomputed); without omega nothing is reported.
    pub fn handle_shutdown(&mut self, omega: bool) -> Option<Transition> {
        if omega && self.up {
            self.up = false;
            Some(Transition::Down {
                reason: "shutdown".to_string(),
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn down(r: &str) -> CheckOutcome {
        CheckOutcome::Down(r.to_string())
    }

    /// A simulated clock driving one state: runs each check at its due time, taking
    /// `run_time` per run, and records (time since t0, transition).
    struct Sim {
        t0: Instant,
        state: HealthState,
        run_time: Duration,
        log: Vec<(Duration, Transition)>,
    }

    impl Sim {
        fn new(timing: CheckTiming) -> Self {
            let t0 = Instant::now();
            Sim {
                t0,
                state: HealthState::new(timing, t0, Duration::ZERO),
                run_time: Duration::from_millis(10),
                log: Vec::new(),
            }
        }
        /// Run one check with `outcome`; return when it started (relative to t0).
        fn step(&mut self, outcome: CheckOutcome) -> Duration {
            let started = self.state.poll_timeout();
            let now = started + self.run_time;
            if let Some(t) = self.state.handle_outcome(started, now, &outcome) {
                self.log.push((now - self.t0, t));
            }
            started - self.t0
        }
    }

    fn timing(retry: u32, rise: u32, fall: u32, alpha: bool) -> CheckTiming {
        CheckTiming {
            delay_loop: 10 * S,
            retry,
            delay_before_retry: 2 * S,
            warmup: None,
            rise,
            fall,
            alpha,
        }
    }

    #[test]
    fn up_server_goes_down_after_one_plus_retry_failures_spaced_by_delay_before_retry() {
        let mut sim = Sim::new(timing(2, 1, 1, false));
        assert!(sim.state.is_up());
        assert_eq!(sim.step(CheckOutcome::Up), Duration::ZERO);
        assert_eq!(sim.step(down("refused")), 10 * S);
        assert_eq!(sim.step(down("refused")), 12 * S);
        assert!(sim.log.is_empty());
        assert_eq!(sim.step(down("refused")), 14 * S);
        assert_eq!(
            sim.log,
            vec![(
                14 * S + sim.run_time,
                Transition::Down {
                    reason: "refused".into()
                }
            )]
        );
        // Down: no retries, back to delay_loop.
        assert_eq!(sim.step(down("refused")), 24 * S);
        assert_eq!(sim.step(down("refused")), 34 * S);
        assert_eq!(sim.log.len(), 1);
    }

    #[test]
    fn a_success_between_failures_resets_the_retry_count() {
        let mut sim = Sim::new(timing(1, 1, 1, false));
        for _ in 0..5 {
            sim.step(down("x"));
            sim.step(CheckOutcome::Up);
        }
        assert!(sim.log.is_empty());
        assert!(sim.state.is_up());
    }

    #[test]
    fn retry_zero_goes_down_on_the_first_failure() {
        let mut sim = Sim::new(timing(0, 1, 1, false));
        sim.step(down("500"));
        assert_eq!(sim.log.len(), 1);
        assert!(!sim.state.is_up());
    }

    #[test]
    fn alpha_starts_down_until_proven_up() {
        let mut sim = Sim::new(timing(1, 1, 1, true));
        assert!(!sim.state.is_up());
        // Failures while down are silent and not retried.
        assert_eq!(sim.step(down("x")), Duration::ZERO);
        assert_eq!(sim.step(down("x")), 10 * S);
        assert!(sim.log.is_empty());
        sim.step(CheckOutcome::Up);
        assert_eq!(sim.log[0].1, Transition::Up { weight: None });
    }

    #[test]
    fn rise_needs_consecutive_successes_and_a_failure_restarts_the_count() {
        let mut sim = Sim::new(timing(0, 3, 1, true));
        sim.step(CheckOutcome::Up);
        sim.step(CheckOutcome::Up);
        sim.step(down("x"));
        sim.step(CheckOutcome::Up);
        sim.step(CheckOutcome::Up);
        assert!(sim.log.is_empty());
        sim.step(CheckOutcome::Up);
        assert_eq!(sim.log.len(), 1);
        assert!(sim.state.is_up());
    }

    #[test]
    fn fall_counts_failed_rounds_of_one_plus_retry_attempts() {
        let mut sim = Sim::new(timing(1, 1, 2, false));
        // Round 1: attempt at 0 fails, retry at 2 fails → failed round; next round at 12.
        assert_eq!(sim.step(down("x")), Duration::ZERO);
        assert_eq!(sim.step(down("x")), 2 * S);
        assert!(sim.log.is_empty());
        assert_eq!(sim.step(down("x")), 12 * S);
        assert_eq!(sim.step(down("x")), 14 * S);
        assert_eq!(sim.log.len(), 1);
        assert!(!sim.state.is_up());
    }

    #[test]
    fn a_flapping_server_changes_state_no_faster_than_rise_and_fall_allow() {
        // Alternating up/down every run: with rise 2 and fall 2 nothing ever changes.
        let mut sim = Sim::new(timing(0, 2, 2, false));
        for i in 0..100 {
            sim.step(if i % 2 == 0 {
                down("flap")
            } else {
                CheckOutcome::Up
            });
        }
        assert!(sim.log.is_empty());
        // Two failures then two successes: exactly one Down and one Up.
        for o in [down("x"), down("x"), CheckOutcome::Up, CheckOutcome::Up] {
            sim.step(o);
        }
        let kinds: Vec<_> = sim
            .log
            .iter()
            .map(|(_, t)| matches!(t, Transition::Up { .. }))
            .collect();
        assert_eq!(kinds, vec![false, true]);
    }

    #[test]
    fn dynamic_weight_changes_are_reported_while_up_and_carried_by_up() {
        let mut sim = Sim::new(timing(0, 1, 1, false));
        sim.step(CheckOutcome::UpWithWeight(5));
        sim.step(CheckOutcome::UpWithWeight(5));
        sim.step(CheckOutcome::Up); // exit 0 keeps the weight
        sim.step(CheckOutcome::UpWithWeight(0));
        sim.step(down("exit 1"));
        sim.step(CheckOutcome::UpWithWeight(7));
        let got: Vec<_> = sim.log.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            got,
            vec![
                Transition::WeightChanged { weight: 5 },
                Transition::WeightChanged { weight: 0 },
                Transition::Down {
                    reason: "exit 1".into()
                },
                Transition::Up { weight: Some(7) },
            ]
        );
    }

    #[test]
    fn a_run_longer_than_delay_loop_is_rescheduled_now_not_in_the_past() {
        let mut sim = Sim::new(timing(0, 1, 1, false));
        sim.run_time = 25 * S;
        assert_eq!(sim.step(CheckOutcome::Up), Duration::ZERO);
        assert_eq!(sim.step(CheckOutcome::Up), 25 * S);
    }

    #[test]
    fn omega_reports_up_servers_down_at_shutdown() {
        let t0 = Instant::now();
        let mut a = HealthState::new(timing(0, 1, 1, false), t0, Duration::ZERO);
        assert_eq!(a.clone().handle_shutdown(false), None);
        assert!(matches!(
            a.handle_shutdown(true),
            Some(Transition::Down { .. })
        ));
        let mut b = HealthState::new(timing(0, 1, 1, true), t0, Duration::ZERO);
        assert_eq!(b.handle_shutdown(true), None);
    }

    #[test]
    fn first_run_spread_is_warmup_if_set_else_delay_loop() {
        let mut t = timing(0, 1, 1, false);
        assert_eq!(t.first_run_spread(), 10 * S);
        t.warmup = Some(3 * S);
        assert_eq!(t.first_run_spread(), 3 * S);
    }
}
