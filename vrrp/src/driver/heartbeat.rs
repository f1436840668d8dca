//! Heartbeats of the link tasks, for a watchdog: each link's protocol loop stamps its own
//! (every turn, and at least once a second when idle), and [`Heartbeats::stalest`] says how
//! long ago the least recent was. A loop that stalls (stuck in a call, starved) stops
//! stamping, so a watchdog fed only while every stamp is fresh lets systemd kill and
//! restart a daemon whose timers no longer run, which a watchdog fed by a task of its own
//! would not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// How often an idle link loop stamps its heartbeat.
pub const IDLE_BEAT: Duration = Duration::from_secs(1);

/// The instant stamps count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One link's heartbeat (milliseconds since the epoch of its last stamp).
#[derive(Debug)]
pub struct Heartbeat(AtomicU64);

impl Heartbeat {
    /// Records that the loop ran now.
    pub fn stamp(&self) {
        self.0
            .store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The heartbeats of the running links; a link's goes when its task ends.
#[derive(Debug, Default)]
pub struct Heartbeats {
    beats: Mutex<Vec<Weak<Heartbeat>>>,
}

impl Heartbeats {
    /// A new heartbeat, stamped now, for a link about to start.
    pub fn register(&self) -> Arc<Heartbeat> {
        let beat = Arc::new(Heartbeat(AtomicU64::new(0)));
        beat.stamp();
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|b| b.strong_count() > 0);
        beats.push(Arc::downgrade(&beat));
        beat
    }

    /// How long ago the least recently stamped running link stamped (`None`: no link).
    pub fn stalest(&self) -> Option<Duration> {
        let now = epoch().elapsed().as_millis() as u64;
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats
            .iter()
            .filter_map(Weak::upgrade)
            .map(|b| Duration::from_millis(now.saturating_sub(b.0.load(Ordering::Relaxed))))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stalest_running_link_counts_and_an_ended_one_does_not() {
        let beats = Heartbeats::default();
        assert_eq!(beats.stalest(), None);
        let old = beats.register();
        std::thread::sleep(Duration::from_millis(30));
        let fresh = beats.register();
        assert!(beats.stalest().unwrap() >= Duration::from_millis(30));
        old.stamp();
        assert!(beats.stalest().unwrap() < Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(30));
        drop(old);
        fresh.stamp();
        assert!(
            beats.stalest().unwrap() < Duration::from_millis(30),
            "an ended link's heartbeat no longer counts"
        );
    }
}
