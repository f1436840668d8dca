//! A pair of haldir routers, r1 and r2. Most of this module is the shared part of the
//! tests that inject crafted protocol-112 traffic (`tests/hostile_input.rs`,
//! `tests/vrrp_auth.rs`): it records the election, sends copies of a packet from an
//! [`Injector`] and checks, from both routers' status files, that every copy was dropped
//! and counted exactly once under the expected reason and that nothing else changed.
//! [`wait_for_roles`] is the tracking tests' wait for a handover (`tests/track_*.rs`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{wait_until, Haldir, Injector, Lab};

/// Waits up to 10 s for r1 and r2 to be in `states` with `vip` on exactly the hosts
/// `holder` names (of "r1" and "r2"), and returns the time it took; panics with what
/// each shows and both logs, saying `what` was awaited, otherwise.
pub fn wait_for_roles(
    lab: &Lab,
    (r1, r2): (&Haldir, &Haldir),
    vip: &str,
    what: &str,
    states: (&str, &str),
    holder: &[&str],
) -> Duration {
    let holders = || -> Vec<&'static str> {
        ["r1", "r2"]
            .into_iter()
            .filter(|h| lab.has_address(h, vip))
            .collect()
    };
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(10), || {
        r1.state().as_deref() == Some(states.0)
            && r2.state().as_deref() == Some(states.1)
            && holders() == holder
    });
    assert!(
        ok,
        "{what}: expected r1 {} and r2 {} with {vip} on {holder:?}; got r1 {:?}, r2 {:?}, {vip} on {:?}\nr1 log:\n{}\nr2 log:\n{}",
        states.0,
        states.1,
        r1.state(),
        r2.state(),
        holders(),
        r1.log(),
        r2.log()
    );
    start.elapsed()
}

/// Every drop counted in a router's status file (first instance and first link), summed.
pub fn total_drops(h: &Haldir) -> u64 {
    let Some(status) = h.status() else { return 0 };
    let sum = |v: &Value| -> u64 {
        v.as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0)
    };
    sum(&status["instances"][0]["drops"]) + sum(&status["links"][0]["drops"])
}

/// State, status file and log tail of each router, for assertion messages.
pub fn describe(routers: &[&Haldir]) -> String {
    routers
        .iter()
        .map(|h| {
            let log = h.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            format!(
                "--- {} (running {}): state {:?}\nstatus: {}\nlog tail:\n{}",
                h.host(),
                h.is_running(),
                h.state(),
                h.status().map(|s| s.to_string()).unwrap_or_default(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What one burst of a crafted packet must do.
pub struct Burst<'p> {
    /// Named in assertion messages.
    pub what: &'p str,
    /// The VRRP payload.
    pub payload: &'p [u8],
    /// The IP TTL it is sent with.
    pub ttl: u8,
    /// The drop reason every copy must be counted under.
    pub reason: &'p str,
    /// How many copies, and the pause between two.
    pub copies: u64,
    /// See `copies`.
    pub spacing: Duration,
    /// How long to wait, once all are counted, for a late count under another reason.
    pub settle: Duration,
    /// A counter that must not move: on both routers, or (`true`) on the master only
    /// (the backup keeps accepting the master's own adverts meanwhile).
    pub unmoved: (&'p str, bool),
}

/// The master and backup as elected, with their transition counters at that point.
pub struct Pair<'a, 'l> {
    lab: &'l Lab,
    /// The elected master.
    pub master: &'a Haldir<'l>,
    /// The elected backup.
    pub backup: &'a Haldir<'l>,
    vip: String,
    transitions: (u64, u64),
}

impl<'a, 'l> Pair<'a, 'l> {
    /// Waits (up to `timeout`) for `master` to be MASTER holding `vip` and `backup` BACKUP
    /// without it; panics otherwise.
    pub fn elected(
        lab: &'l Lab,
        master: &'a Haldir<'l>,
        backup: &'a Haldir<'l>,
        vip: &str,
        timeout: Duration,
    ) -> Self {
        let ok = wait_until(timeout, || {
            master.state().as_deref() == Some("MASTER")
                && backup.state().as_deref() == Some("BACKUP")
                && lab.has_address(master.host(), vip)
                && !lab.has_address(backup.host(), vip)
        });
        assert!(ok, "no clean election\n{}", describe(&[master, backup]));
        Pair {
            lab,
            master,
            backup,
            vip: vip.to_owned(),
            transitions: (master.counter("transitions"), backup.counter("transitions")),
        }
    }

    /// Master, then backup.
    pub fn routers(&self) -> [&'a Haldir<'l>; 2] {
        [self.master, self.backup]
    }

    /// Nothing changed since the election: both alive, same states, no transition, the
    /// VIP on the master only.
    pub fn assert_undisturbed(&self, after: &str) {
        let context = || format!("after {after}\n{}", describe(&self.routers()));
        assert!(
            self.master.is_running() && self.backup.is_running(),
            "a router died: {}",
            context()
        );
        assert_eq!(
            (self.master.state(), self.backup.state()),
            (Some("MASTER".to_owned()), Some("BACKUP".to_owned())),
            "{}",
            context()
        );
        assert_eq!(
            (
                self.master.counter("transitions"),
                self.backup.counter("transitions")
            ),
            self.transitions,
            "a state transition happened: {}",
            context()
        );
        assert!(
            self.lab.has_address(self.master.host(), &self.vip),
            "{}",
            context()
        );
        assert!(
            !self.lab.has_address(self.backup.host(), &self.vip),
            "{}",
            context()
        );
    }

    /// Sends the burst from `injector`: both routers count each copy exactly once under
    /// its reason and under no other, the `unmoved` counter stays, nothing else changes.
    pub fn assert_dropped(&self, injector: &Injector, burst: &Burst) {
        let Burst {
            what,
            reason,
            copies,
            ..
        } = *burst;
        let routers = self.routers();
        let (unmoved, master_only) = burst.unmoved;
        let before: Vec<(u64, u64, u64)> = routers
            .iter()
            .map(|h| (h.drops(reason), total_drops(h), h.counter(unmoved)))
            .collect();
        injector
            .send_many(burst.payload, burst.ttl, copies as usize, burst.spacing)
            .unwrap_or_else(|e| panic!("cannot send {what}: {e:#}"));
        for (h, (reason_before, _, _)) in routers.iter().zip(&before) {
            let counted = wait_until(Duration::from_secs(5), || {
                h.drops(reason) >= reason_before + copies
            });
            assert!(
                counted,
                "{what}: {} counted {} `{reason}` drops, expected {copies}\n{}",
                h.host(),
                h.drops(reason) - reason_before,
                describe(&routers)
            );
        }
        // Late status updates would show double counting or a second reason.
        std::thread::sleep(burst.settle);
        for (i, (h, (reason_before, total_before, unmoved_before))) in
            routers.iter().zip(&before).enumerate()
        {
            assert_eq!(
                h.drops(reason) - reason_before,
                copies,
                "{what}: `{reason}` on {}",
                h.host()
            );
            assert_eq!(
                total_drops(h) - total_before,
                copies,
                "{what}: {} counted drops under other reasons too\n{}",
                h.host(),
                describe(&routers)
            );
            if i == 0 || !master_only {
                assert_eq!(
                    h.counter(unmoved),
                    *unmoved_before,
                    "{what}: `{unmoved}` moved on {}",
                    h.host()
                );
            }
        }
        self.assert_undisturbed(what);
    }
}
