//! A stall meter: how long this process was not run when it should have been.
//!
//! A thread sleeps [`TICK`] in a loop and notes every wake-up later than [`NOTED`] past
//! its time, with when it should have woken. In the software-emulated VM on a busy host
//! the whole VM is not scheduled for tenths of a second at a time; every process in it
//! (the router's FRR, the directors' haldirs) then stops alike, so a timing measured
//! across such a stall is that much longer. The lab's figures subtract nothing: they are
//! printed beside the stalls, and a bound may grant the stalled time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::lock;

/// The meter's sleep.
pub const TICK: Duration = Duration::from_millis(10);
/// A wake-up later than this counts as a stall (timer slack and a busy core stay below).
pub const NOTED: Duration = Duration::from_millis(20);

/// Notes this process's stalls from its start until dropped.
#[derive(Debug)]
pub struct StallMeter {
    stalls: Arc<Mutex<Vec<(Instant, Duration)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StallMeter {
    /// Starts the meter's thread.
    pub fn start() -> anyhow::Result<StallMeter> {
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("stall-meter".into())
            .spawn({
                let stalls = stalls.clone();
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let due = Instant::now() + TICK;
                        std::thread::sleep(TICK);
                        let late = Instant::now().saturating_duration_since(due);
                        if late > NOTED {
                            lock(&stalls).push((due, late));
                        }
                    }
                }
            })
            .context("cannot start the stall meter")?;
        Ok(StallMeter {
            stalls,
            stop,
            thread: Some(thread),
        })
    }

    /// Every stall so far: when the meter should have woken, and how late it woke.
    pub fn stalls(&self) -> Vec<(Instant, Duration)> {
        lock(&self.stalls).clone()
    }

    /// The stalled time within `from..to`, in all and the longest one (the parts of each
    /// stall inside the window).
    pub fn stalled_between(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        overlap(&lock(&self.stalls), from, to)
    }

    /// The stalled time since the start, in all and the longest one.
    pub fn total(&self) -> (Duration, Duration) {
        let stalls = lock(&self.stalls);
        let total = stalls.iter().map(|(_, late)| *late).sum();
        let worst = stalls
            .iter()
            .map(|(_, late)| *late)
            .max()
            .unwrap_or_default();
        (total, worst)
    }
}

/// The parts of `stalls` (each from its due time for its lateness) inside `from..to`: in
/// all, and the longest.
fn overlap(stalls: &[(Instant, Duration)], from: Instant, to: Instant) -> (Duration, Duration) {
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for &(due, late) in stalls {
        let start = due.max(from);
        let end = (due + late).min(to);
        let inside = end.saturating_duration_since(start);
        total += inside;
        worst = worst.max(inside);
    }
    (total, worst)
}

impl Drop for StallMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parts_of_stalls_inside_the_window_count() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let stalls = [
            (t0, ms(100)),           // before the window, ends at 100
            (t0 + ms(150), ms(100)), // 150..250: 50 inside
            (t0 + ms(300), ms(200)), // 300..500: all inside
            (t0 + ms(550), ms(300)), // 550..850: 50 inside
        ];
        assert_eq!(
            overlap(&stalls, t0 + ms(200), t0 + ms(600)),
            (ms(50 + 200 + 50), ms(200))
        );
        assert_eq!(
            overlap(&stalls, t0 + ms(900), t0 + ms(1000)),
            (ms(0), ms(0))
        );
    }

    #[test]
    fn the_stalled_time_measured_never_exceeds_the_window() {
        let meter = StallMeter::start().unwrap();
        let from = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        let (total, worst) = meter.stalled_between(from, Instant::now());
        // On a loaded machine there may be some; never more than the window.
        assert!(total <= Duration::from_millis(100) && worst <= total);
    }
}
