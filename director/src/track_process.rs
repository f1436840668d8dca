//! `track_process` policy (keepalived.conf(5), "VRRP track processes"): which running
//! process a block matches, whether the number matching is within its quorum, and when a
//! change of that counts once `fork_delay` / `terminate_delay` have passed. Pure: the
//! daemon scans `/proc` and feeds [`QuorumState::observe`] with the count and `now`.

use std::time::{Duration, Instant};

use haldir_config::{ParamMatch, TrackProcess};

/// One running process as the scan saw it.
#[derive(Debug, Clone, Copy)]
pub struct RunningProcess<'a> {
    /// `/proc/PID/comm` (the name in `/proc/PID/stat`).
    pub comm: &'a [u8],
    /// `/proc/PID/cmdline` split at its NULs (empty for kernel threads, or when the scan
    /// did not read it because no block needs it).
    pub argv: &'a [&'a [u8]],
}

/// Whether `process` is one that `block` counts (keepalived's matching: an exact
/// comparison, never a pattern; `pgrep -x`, or `pgrep -fx` with `full_command`).
pub fn matches(block: &TrackProcess, process: &RunningProcess<'_>) -> bool {
    if !block.full_command {
        return process.comm == block.process.as_bytes();
    }
    let Some((first, args)) = process.argv.split_first() else {
        return false;
    };
    if *first != block.process.as_bytes() {
        return false;
    }
    let params = &block.params;
    match block.param_match {
        None => true,
        Some(ParamMatch::Exact) => {
            args.len() == params.len() && args.iter().zip(params).all(|(a, p)| *a == p.as_bytes())
        }
        Some(ParamMatch::Partial) => {
            args.len() >= params.len() && args.iter().zip(params).all(|(a, p)| *a == p.as_bytes())
        }
        Some(ParamMatch::Initial) => {
            let Some((last, leading)) = params.split_last() else {
                return true;
            };
            args.len() >= params.len()
                && args.iter().zip(leading).all(|(a, p)| *a == p.as_bytes())
                && args[leading.len()].starts_with(last.as_bytes())
        }
    }
}

/// Whether `count` matching processes make `block`'s quorum.
pub fn in_quorum(block: &TrackProcess, count: u32) -> bool {
    count >= block.quorum && block.quorum_max.is_none_or(|max| count <= max)
}

/// A block's counted state: the quorum as last counted, and a change waiting for its
/// delay.
#[derive(Debug, Clone, Default)]
pub struct QuorumState {
    up: Option<bool>,
    pending: Option<(bool, Instant)>,
}

impl QuorumState {
    /// The quorum as counted (`None` before the first scan).
    pub fn up(&self) -> Option<bool> {
        self.up
    }

    /// Takes one scan's count at `now`; returns the new counted state when it changed.
    /// The first scan counts at once (keepalived reads `/proc` at start the same way); a
    /// later change counts after `fork_delay` (quorum gained) or `terminate_delay`
    /// (quorum lost) if it still holds then, and a change that reverts before that is
    /// forgotten.
    pub fn observe(&mut self, block: &TrackProcess, count: u32, now: Instant) -> Option<bool> {
        let now_up = in_quorum(block, count);
        let Some(up) = self.up else {
            self.up = Some(now_up);
            return Some(now_up);
        };
        if now_up == up {
            self.pending = None;
            return None;
        }
        let delay = if now_up {
            block.fork_delay
        } else {
            block.terminate_delay
        };
        let due = match self.pending {
            Some((state, due)) if state == now_up => due,
            _ => now + delay,
        };
        if now >= due {
            self.up = Some(now_up);
            self.pending = None;
            Some(now_up)
        } else {
            self.pending = Some((now_up, due));
            None
        }
    }

    /// When a waiting change falls due (the caller scans again then).
    pub fn due(&self) -> Option<Instant> {
        self.pending.map(|(_, due)| due)
    }
}

/// What a tracked process's quorum does to an instance (keepalived's
/// `process_update_track_process_status`): with weight 0, FAULT while the quorum is lost
/// (with `reverse`, while it is held); otherwise the weight (negated by `reverse`) counts
/// while the quorum is held for a positive weight, while it is lost for a negative one.
pub fn process_effect(up: bool, weight: i32, reverse: bool) -> ProcessEffect {
    if weight == 0 {
        return if up == reverse {
            ProcessEffect::Fault
        } else {
            ProcessEffect::Priority(0)
        };
    }
    if (weight > 0) == up {
        ProcessEffect::Priority(if reverse { -weight } else { weight })
    } else {
        ProcessEffect::Priority(0)
    }
}

/// What one tracked process does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEffect {
    /// Added to the priority.
    Priority(i32),
    /// The instance goes to FAULT.
    Fault,
}

/// The longest delay a block waits, for the caller's scan schedule.
pub fn longest_delay(blocks: &[TrackProcess]) -> Duration {
    blocks
        .iter()
        .map(|b| b.fork_delay.max(b.terminate_delay))
        .max()
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(process: &str) -> TrackProcess {
        TrackProcess {
            name: "p".into(),
            process: process.into(),
            params: Vec::new(),
            param_match: None,
            full_command: false,
            weight: 0,
            reverse: false,
            quorum: 1,
            quorum_max: None,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
            loc: haldir_config::Loc {
                file: "k.conf".into(),
                line: 1,
                col: 1,
            },
        }
    }

    fn running<'a>(comm: &'a str, argv: &'a [&'a [u8]]) -> RunningProcess<'a> {
        RunningProcess {
            comm: comm.as_bytes(),
            argv,
        }
    }

    #[test]
    fn a_name_matches_the_process_name_exactly_not_as_a_pattern() {
        let b = block("ssh");
        assert!(matches(&b, &running("ssh", &[])));
        assert!(
            !matches(&b, &running("sshd", &[])),
            "pgrep ssh would; keepalived does not"
        );
        assert!(!matches(&b, &running("ss", &[])));
    }

    #[test]
    fn full_command_compares_the_command_line_as_param_match_says() {
        let argv: [&[u8]; 4] = [
            b"/usr/sbin/haproxy",
            b"-f",
            b"/etc/haproxy/haproxy.cfg",
            b"-Ws",
        ];
        let p = running("haproxy", &argv);
        let mut b = block("/usr/sbin/haproxy");
        b.full_command = true;
        assert!(
            matches(&b, &p),
            "no param_match: only the command is compared"
        );
        assert!(
            !matches(&block("/usr/sbin/haproxy"), &p),
            "without full_command: comm"
        );
        b.param_match = Some(ParamMatch::Exact);
        assert!(
            !matches(&b, &p),
            "exact with no parameters: the process must have none"
        );
        b.params = vec!["-f".into(), "/etc/haproxy/haproxy.cfg".into(), "-Ws".into()];
        assert!(matches(&b, &p));
        b.params.pop();
        assert!(
            !matches(&b, &p),
            "exact: one parameter fewer does not match"
        );
        b.param_match = Some(ParamMatch::Partial);
        assert!(matches(&b, &p), "partial: the first ones match");
        b.params = vec!["-f".into(), "/etc/haproxy/".into()];
        assert!(!matches(&b, &p), "partial: whole parameters only");
        b.param_match = Some(ParamMatch::Initial);
        assert!(
            matches(&b, &p),
            "initial: the last one given may be a prefix"
        );
        b.params = vec!["-x".into(), "/etc/haproxy/".into()];
        assert!(!matches(&b, &p));
        assert!(
            !matches(&b, &running("kthreadd", &[])),
            "a kernel thread has no command line"
        );
    }

    #[test]
    fn quorum_and_quorum_max_bound_the_count() {
        let mut b = block("nginx");
        b.quorum = 2;
        b.quorum_max = Some(3);
        assert_eq!(
            (0..5).map(|n| in_quorum(&b, n)).collect::<Vec<_>>(),
            [false, false, true, true, false]
        );
        b.quorum = 0;
        b.quorum_max = Some(0);
        assert!(in_quorum(&b, 0), "quorum_max 0: up while none runs");
        assert!(!in_quorum(&b, 1));
    }

    #[test]
    fn delays_hold_a_change_back_and_a_bounce_is_forgotten() {
        let mut b = block("haproxy");
        b.fork_delay = Duration::from_secs(2);
        b.terminate_delay = Duration::from_secs(1);
        let t0 = Instant::now();
        let s = |secs: f64| t0 + Duration::from_secs_f64(secs);
        let mut q = QuorumState::default();
        assert_eq!(
            q.observe(&b, 1, s(0.0)),
            Some(true),
            "the first scan counts at once"
        );
        assert_eq!(
            q.observe(&b, 0, s(0.5)),
            None,
            "lost: waits terminate_delay"
        );
        assert_eq!(q.due(), Some(s(1.5)));
        assert_eq!(
            q.observe(&b, 1, s(1.0)),
            None,
            "back before the delay: forgotten"
        );
        assert_eq!(q.due(), None);
        assert_eq!(q.observe(&b, 0, s(2.0)), None);
        assert_eq!(q.observe(&b, 0, s(2.9)), None);
        assert_eq!(
            q.observe(&b, 0, s(3.0)),
            Some(false),
            "lost for terminate_delay"
        );
        assert_eq!(q.observe(&b, 1, s(3.5)), None, "gained: waits fork_delay");
        assert_eq!(q.observe(&b, 1, s(5.5)), Some(true));
        assert_eq!(q.up(), Some(true));
        let undelayed = block("haproxy");
        assert_eq!(
            q.observe(&undelayed, 0, s(6.0)),
            Some(false),
            "no delay: at once"
        );
    }

    #[test]
    fn the_effect_follows_keepalived_weights_and_reverse() {
        use ProcessEffect::{Fault, Priority};
        assert_eq!(process_effect(false, 0, false), Fault);
        assert_eq!(process_effect(true, 0, false), Priority(0));
        assert_eq!(
            process_effect(true, 0, true),
            Fault,
            "weight 0 reverse: down while up"
        );
        assert_eq!(process_effect(false, 0, true), Priority(0));
        assert_eq!(process_effect(true, 10, false), Priority(10));
        assert_eq!(process_effect(false, 10, false), Priority(0));
        assert_eq!(process_effect(false, -20, false), Priority(-20));
        assert_eq!(process_effect(true, -20, false), Priority(0));
        assert_eq!(process_effect(true, 10, true), Priority(-10));
        assert_eq!(process_effect(false, -20, true), Priority(20));
    }
}
