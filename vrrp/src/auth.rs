//! Advert authentication policy (keepalived's `auth_hmac`), without I/O: the
//! keys, the mode, the sequence numbers we send and the replay marks of the
//! senders we hear. The bytes on the wire are [`crate::wire::auth`].
//!
//! Like the router, an [`Authenticator`] owns no clock: the driver passes the
//! wall-clock time (since the Unix epoch) to [`Authenticator::sign`] and
//! [`Authenticator::check`], so tests run on any time they like.
//!
//! **Sequence numbers.** The 64-bit sequence is the wall clock: UTC seconds in
//! the high 32 bits, a 1/65536 s fraction in the next 16, a counter in the low
//! 16, and each advert takes `max(clock, previous + 1)`. Nothing is stored on
//! disk: a restarted sender (or a rebooted host) still continues above what it
//! sent before as long as its clock moved forward across the restart, which
//! NTP-kept clocks do. The same layout is what keepalived sends, so its
//! freshness check accepts ours. In `time` anti-replay mode a sender whose
//! previous sequence is more than the window ahead of its clock (the clock was
//! stepped back) restarts from the clock, as receivers would reject the old
//! one as stale anyway.
//!
//! **Receiving.** The checks, in order, each with its own counter
//! ([`AuthFailure::as_str`]): a trailer is present (`auth_missing`), well
//! formed (`auth_malformed`), fresh — within `time_window` seconds of our
//! clock, `time` mode only, checked before the HMAC so a flood of old
//! captures costs no digest (`auth_stale`), names a configured key
//! (`auth_unknown_key`), carries the right HMAC (`auth_bad_hmac`), and a
//! sequence above the highest one verified from the same source address
//! (`auth_replay`; serial-number order, RFC 1982). The mark only moves on a
//! verified advert, so forged packets cannot push it. Marks are kept for
//! [`MAX_SENDERS`] sources (only key holders get one), least recently used
//! first out; in `time` mode a mark older than the window expires, which
//! lets a sender whose clock was stepped back recover.
//!
//! **Modes.** `enforce` signs and drops every advert that fails a check.
//! `permissive` signs, runs every check, counts and logs failures, and still
//! accepts the advert. `receive-only` sends no trailer (so peers without the
//! extension keep hearing us) and otherwise behaves like `permissive`. A
//! cluster migrates with receive-only everywhere, then permissive, then
//! enforce, one router at a time, without losing an advert. Unlike
//! keepalived, haldir's two migration modes never drop: keepalived drops an
//! advert whose trailer is present but wrong even in them. Neither protects
//! against an attacker, who can always send no trailer, until enforce.
//!
//! **Key rotation.** Any configured key id is accepted; adverts are signed
//! with `active_key`. Add the new key everywhere, then move `active_key`,
//! then remove the old key.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ring::hmac;

use crate::wire::auth::{self, TrailerRepr};

/// Replay marks kept, one per sending source address.
pub const MAX_SENDERS: usize = 16;

/// What to do with adverts that fail authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Sign; drop (and count) every advert that fails a check.
    #[default]
    Enforce,
    /// Sign; count and log failures, accept the advert anyway.
    Permissive,
    /// Do not sign; verify trailers that are present; count and log failures,
    /// accept the advert anyway.
    ReceiveOnly,
}

impl Mode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Permissive => "permissive",
            Mode::ReceiveOnly => "receive-only",
        }
    }
}

/// How a replayed advert is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AntiReplay {
    /// A strictly growing sequence per sender, and the sequence's time within
    /// `window_secs` of ours (needs clocks kept in sync).
    Time {
        /// The freshness window, seconds (1..=300).
        window_secs: u16,
    },
    /// A strictly growing sequence per sender only.
    Monotonic,
}

/// One shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// Its id, 1..=255, carried in the trailer.
    pub id: u8,
    /// The secret, 32..=64 bytes.
    pub secret: Vec<u8>,
}

/// Keeps the secret out of logs.
impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey {{ id: {}, secret: <redacted> }}", self.id)
    }
}

/// The `auth_hmac` configuration of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Every key accepted on receipt.
    pub keys: Vec<AuthKey>,
    /// The id of the key adverts are signed with (one of `keys`).
    pub active_key: u8,
    /// What failures do.
    pub mode: Mode,
    /// How replays are recognised.
    pub anti_replay: AntiReplay,
}

/// Why an advert failed authentication; each is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthFailure {
    /// No trailer.
    Missing,
    /// A trailer of an unknown type or with a non-zero reserved field.
    Malformed,
    /// The sequence's time is outside the freshness window.
    Stale,
    /// The key id is not configured.
    UnknownKey,
    /// The HMAC does not verify: forged, altered, or another secret under
    /// the same key id.
    BadHmac,
    /// The sequence is not above the highest verified one from this source.
    Replay,
    /// A trailer reached an instance without `auth_hmac` (dropped as the
    /// length mismatch it is to such a receiver).
    Unexpected,
}

impl AuthFailure {
    /// Every variant, e.g. to pre-register counters.
    pub const ALL: [AuthFailure; 7] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Stale,
        AuthFailure::UnknownKey,
        AuthFailure::BadHmac,
        AuthFailure::Replay,
        AuthFailure::Unexpected,
    ];

    /// Stable snake_case name, used as a counter label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "auth_missing",
            AuthFailure::Malformed => "auth_malformed",
            AuthFailure::Stale => "auth_stale",
            AuthFailure::UnknownKey => "auth_unknown_key",
            AuthFailure::BadHmac => "auth_bad_hmac",
            AuthFailure::Replay => "auth_replay",
            AuthFailure::Unexpected => "auth_unexpected",
        }
    }
}

/// The outcome of [`Authenticator::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The trailer verified.
    Authenticated,
    /// It failed, and the mode accepts it anyway.
    Accepted(AuthFailure),
    /// It failed, and must be dropped.
    Dropped(AuthFailure),
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    source: IpAddr,
    sequence: u64,
    used: u64,
}

/// What a restart (or an instance replaced by a reload) must not forget: the sequence
/// last sent and the replay marks. The daemon keeps one per instance in a
/// [`ReplayStore`] and writes it to disk (`src/replay_state.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayState {
    /// The sequence number last sent.
    pub last_sent: u64,
    /// The highest verified sequence per sending source address (at most
    /// [`MAX_SENDERS`]).
    pub marks: Vec<(IpAddr, u64)>,
}

/// Every instance's [`ReplayState`] by instance name, shared by the link tasks (which put
/// a state whenever it changes) and the task that writes it to disk (which takes it
/// when something changed). Bounded by the instances configured and [`MAX_SENDERS`].
#[derive(Debug, Default)]
pub struct ReplayStore {
    states: std::sync::Mutex<std::collections::BTreeMap<String, ReplayState>>,
    dirty: std::sync::atomic::AtomicBool,
    /// Woken by a change, so the writer sleeps while nothing changes.
    changes: tokio::sync::Notify,
}

impl ReplayStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, ReplayState>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The states read back at start (nothing is marked to write).
    pub fn load(&self, states: std::collections::BTreeMap<String, ReplayState>) {
        *self.lock() = states;
    }

    /// `instance`'s state, if one was kept.
    pub fn get(&self, instance: &str) -> Option<ReplayState> {
        self.lock().get(instance).cloned()
    }

    /// Keeps `instance`'s state (a change: marked to write).
    pub fn put(&self, instance: &str, state: ReplayState) {
        let mut states = self.lock();
        if states.get(instance) != Some(&state) {
            states.insert(instance.to_owned(), state);
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            self.changes.notify_one();
        }
    }

    /// Returns once a state changed since the last [`take_changed`](Self::take_changed)
    /// (at once if one did, and the change was not waited for yet).
    pub async fn changed(&self) {
        if self.dirty.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        self.changes.notified().await;
    }

    /// Every state, when something changed since the last call.
    pub fn take_changed(&self) -> Option<std::collections::BTreeMap<String, ReplayState>> {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        Some(self.lock().clone())
    }

    /// Every state, changed or not.
    pub fn all(&self) -> std::collections::BTreeMap<String, ReplayState> {
        self.lock().clone()
    }
}

/// The authentication state of one instance.
pub struct Authenticator {
    config: AuthConfig,
    keys: Vec<(u8, hmac::Key)>,
    last_sent: u64,
    marks: Vec<Mark>,
    uses: u64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("last_sent", &self.last_sent)
            .field("marks", &self.marks)
            .finish()
    }
}

/// `a` comes after `b` in serial-number order (RFC 1982, 64 bits).
fn serial_after(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

/// The sequence the clock gives, counter zero.
pub fn clock_sequence(unix_now: Duration) -> u64 {
    let seconds = u64::from(unix_now.as_secs() as u32);
    let fraction = (u64::from(unix_now.subsec_nanos()) << 16) / 1_000_000_000;
    (seconds << 32) | (fraction << 16)
}

/// Signed difference in seconds `a - b` of two 32-bit second counts.
fn seconds_between(a: u64, b: u64) -> i64 {
    i64::from((a as u32).wrapping_sub(b as u32) as i32)
}

impl Authenticator {
    /// A fresh state for `config`.
    pub fn new(config: AuthConfig) -> Authenticator {
        let mut authenticator = Authenticator {
            keys: Vec::new(),
            config,
            last_sent: 0,
            marks: Vec::new(),
            uses: 0,
        };
        authenticator.load_keys();
        authenticator
    }

    fn load_keys(&mut self) {
        self.keys = self
            .config
            .keys
            .iter()
            .map(|k| (k.id, auth::key(&k.secret)))
            .collect();
    }

    /// The sequence last sent and the replay marks, to keep across a restart.
    pub fn replay_state(&self) -> ReplayState {
        ReplayState {
            last_sent: self.last_sent,
            marks: self.marks.iter().map(|m| (m.source, m.sequence)).collect(),
        }
    }

    /// Takes up a state kept from before (a restart, or the instance replaced by a
    /// reload): the send sequence goes on above the one kept (so receivers that kept
    /// their marks accept it, whatever this host's clock did meanwhile), and every mark
    /// kept is raised to at least its kept value (a capture from before stays a
    /// replay). At most [`MAX_SENDERS`] marks are taken.
    pub fn restore(&mut self, state: &ReplayState) {
        if serial_after(state.last_sent, self.last_sent) {
            self.last_sent = state.last_sent;
        }
        for (source, sequence) in state.marks.iter().take(MAX_SENDERS) {
            if let Some(mark) = self.marks.iter_mut().find(|m| m.source == *source) {
                if serial_after(*sequence, mark.sequence) {
                    mark.sequence = *sequence;
                }
            } else if self.marks.len() < MAX_SENDERS {
                self.marks.push(Mark {
                    source: *source,
                    sequence: *sequence,
                    used: 0,
                });
            }
        }
    }

    /// Applies a reloaded configuration, keeping the send sequence and the
    /// replay marks (a reload must not reopen the door to a replay).
    pub fn reconfigure(&mut self, config: AuthConfig) {
        self.config = config;
        self.load_keys();
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn key(&self, id: u8) -> Option<&hmac::Key> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    fn window_secs(&self) -> Option<i64> {
        match self.config.anti_replay {
            AntiReplay::Time { window_secs } => Some(i64::from(window_secs)),
            AntiReplay::Monotonic => None,
        }
    }

    /// The next sequence number to send at `unix_now`.
    fn next_sequence(&mut self, unix_now: Duration) -> u64 {
        let clock = clock_sequence(unix_now);
        let ahead = seconds_between(self.last_sent >> 32, clock >> 32);
        self.last_sent = if serial_after(clock, self.last_sent)
            || self.window_secs().is_some_and(|w| ahead > w)
        {
            clock
        } else {
            self.last_sent.wrapping_add(1)
        };
        self.last_sent
    }

    /// What to sign the next advert with: the active key, its id and a fresh
    /// sequence number. `None` in receive-only mode (or, which validation
    /// prevents, when the active key is not configured).
    pub fn sign(&mut self, unix_now: Duration) -> Option<(hmac::Key, u8, u64)> {
        if self.config.mode == Mode::ReceiveOnly {
            return None;
        }
        let id = self.config.active_key;
        let key = self.key(id)?.clone();
        let sequence = self.next_sequence(unix_now);
        Some((key, id, sequence))
    }

    /// Checks an advert `message` received from `source` at `unix_now`, with
    /// its trailer bytes if it had one, and says what to do with it.
    pub fn check(
        &mut self,
        unix_now: Duration,
        source: IpAddr,
        message: &[u8],
        trailer: Option<&[u8]>,
    ) -> Verdict {
        self.check_with(unix_now, source, trailer, |key, trailer| {
            auth::verifies(key, source, message, trailer)
        })
    }

    /// Checks a message of another protocol (haldir's bulk resync) that carries the same
    /// trailer: the same presence, freshness, key and replay rules and counters as an
    /// advert, with the HMAC computed by `verifies` for the key the trailer names.
    pub fn check_with(
        &mut self,
        unix_now: Duration,
        source: IpAddr,
        trailer: Option<&[u8]>,
        verifies: impl FnOnce(&hmac::Key, &TrailerRepr) -> bool,
    ) -> Verdict {
        match self.verify_with(unix_now, source, trailer, verifies) {
            Ok(()) => Verdict::Authenticated,
            Err(failure) if self.config.mode == Mode::Enforce => Verdict::Dropped(failure),
            Err(failure) => Verdict::Accepted(failure),
        }
    }

    fn verify_with(
        &mut self,
        unix_now: Duration,
        source: IpAddr,
        trailer: Option<&[u8]>,
        verifies: impl FnOnce(&hmac::Key, &TrailerRepr) -> bool,
    ) -> Result<(), AuthFailure> {
        let trailer = trailer.ok_or(AuthFailure::Missing)?;
        let trailer = TrailerRepr::parse(trailer).map_err(|_| AuthFailure::Malformed)?;
        let now_secs = unix_now.as_secs();
        if let Some(window) = self.window_secs() {
            // Before the HMAC: a stale sequence is rejected cheaply. This
            // only ever rejects, so the unauthenticated time grants nothing.
            if seconds_between(now_secs, trailer.sequence >> 32).abs() > window {
                return Err(AuthFailure::Stale);
            }
        }
        let key = self.key(trailer.key_id).ok_or(AuthFailure::UnknownKey)?;
        if !verifies(key, &trailer) {
            return Err(AuthFailure::BadHmac);
        }
        self.accept_sequence(now_secs, source, trailer.sequence)
    }

    /// The replay check against `source`'s mark, raising it when passed.
    fn accept_sequence(
        &mut self,
        now_secs: u64,
        source: IpAddr,
        sequence: u64,
    ) -> Result<(), AuthFailure> {
        self.uses += 1;
        let window = self.window_secs();
        if let Some(window) = window {
            self.marks
                .retain(|m| seconds_between(now_secs, m.sequence >> 32).abs() <= window);
        }
        if let Some(mark) = self.marks.iter_mut().find(|m| m.source == source) {
            if !serial_after(sequence, mark.sequence) {
                return Err(AuthFailure::Replay);
            }
            mark.sequence = sequence;
            mark.used = self.uses;
            return Ok(());
        }
        if self.marks.len() >= MAX_SENDERS {
            if let Some(oldest) = (0..self.marks.len()).min_by_key(|&i| self.marks[i].used) {
                self.marks.swap_remove(oldest);
            }
        }
        self.marks.push(Mark {
            source,
            sequence,
            used: self.uses,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::auth::TRAILER_LEN;
    use crate::wire::vrrp::{AdvertRepr, Auth, Version, VRRP_MULTICAST_V4};
    use std::net::Ipv4Addr;

    const KEY_1: [u8; 32] = [0x11; 32];
    const KEY_2: [u8; 32] = [0x22; 32];

    fn config(mode: Mode, keys: &[(u8, [u8; 32])], active: u8) -> AuthConfig {
        AuthConfig {
            keys: keys
                .iter()
                .map(|(id, secret)| AuthKey {
                    id: *id,
                    secret: secret.to_vec(),
                })
                .collect(),
            active_key: active,
            mode,
            anti_replay: AntiReplay::Time { window_secs: 5 },
        }
    }

    fn sender() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    }

    fn advert() -> AdvertRepr {
        AdvertRepr {
            version: Version::V3,
            vrid: 7,
            priority: 150,
            advert_interval_centis: 100,
            auth: Auth::None,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
        }
    }

    fn at(secs: u64) -> Duration {
        Duration::from_secs(1_750_000_000 + secs)
    }

    /// A signed advert from `sender()` as `auth` sends it at `now`:
    /// (message, trailer).
    fn signed(auth: &mut Authenticator, now: Duration) -> (Vec<u8>, Vec<u8>) {
        let advert = advert();
        let (key, id, sequence) = auth.sign(now).expect("signing mode");
        let mut buf = vec![0; advert.buffer_len() + TRAILER_LEN];
        advert.emit_signed(
            &mut buf,
            sender(),
            IpAddr::V4(VRRP_MULTICAST_V4),
            &key,
            id,
            sequence,
        );
        let trailer = buf.split_off(advert.buffer_len());
        (buf, trailer)
    }

    #[test]
    fn a_signed_advert_verifies_once_and_its_replay_is_dropped() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let mut rx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let (message, trailer) = signed(&mut tx, at(0));
        assert_eq!(
            rx.check(at(0), sender(), &message, Some(&trailer)),
            Verdict::Authenticated
        );
        assert_eq!(
            rx.check(at(1), sender(), &message, Some(&trailer)),
            Verdict::Dropped(AuthFailure::Replay)
        );
        let (message, trailer) = signed(&mut tx, at(1));
        assert_eq!(
            rx.check(at(1), sender(), &message, Some(&trailer)),
            Verdict::Authenticated
        );
    }

    #[test]
    fn sequence_grows_within_one_clock_tick_and_across_a_restart() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let first = tx.sign(at(0)).unwrap().2;
        let second = tx.sign(at(0)).unwrap().2;
        assert_eq!(second, first + 1);
        // A restarted sender starts from its clock, above what it sent.
        let mut restarted = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let after = restarted.sign(at(0) + Duration::from_millis(20)).unwrap().2;
        assert!(serial_after(after, second));
        assert_eq!(first >> 32, at(0).as_secs() & 0xffff_ffff);
    }

    #[test]
    fn a_restarted_receiver_that_kept_its_marks_still_drops_captures_from_before() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let mut rx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let captured = signed(&mut tx, at(0));
        assert_eq!(
            rx.check(at(0), sender(), &captured.0, Some(&captured.1)),
            Verdict::Authenticated
        );
        let kept = rx.replay_state();
        // Restarted without its marks: the capture passes once (the gap this closes).
        let mut forgetful = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        assert_eq!(
            forgetful.check(at(1), sender(), &captured.0, Some(&captured.1)),
            Verdict::Authenticated
        );
        // Restarted with them: a replay, and the sender's next advert passes.
        let mut restarted = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        restarted.restore(&kept);
        assert_eq!(
            restarted.check(at(1), sender(), &captured.0, Some(&captured.1)),
            Verdict::Dropped(AuthFailure::Replay)
        );
        let next = signed(&mut tx, at(1));
        assert_eq!(
            restarted.check(at(1), sender(), &next.0, Some(&next.1)),
            Verdict::Authenticated
        );
    }

    #[test]
    fn monotonic_sender_once_ahead_goes_on_above_its_receivers_after_a_restart() {
        let mut mono = config(Mode::Enforce, &[(1, KEY_1)], 1);
        mono.anti_replay = AntiReplay::Monotonic;
        let mut tx = Authenticator::new(mono.clone());
        let mut rx = Authenticator::new(mono.clone());
        // The sender's clock was an hour ahead once: the receiver's mark is there.
        let ahead = signed(&mut tx, at(3600));
        assert_eq!(
            rx.check(at(0), sender(), &ahead.0, Some(&ahead.1)),
            Verdict::Authenticated
        );
        // Restarted with its clock right but its state lost: dropped as replays, for as
        // long as the receiver keeps its mark (its own kept state included).
        let mut lost = Authenticator::new(mono.clone());
        let behind = signed(&mut lost, at(1));
        assert_eq!(
            rx.check(at(1), sender(), &behind.0, Some(&behind.1)),
            Verdict::Dropped(AuthFailure::Replay)
        );
        // Restarted with its kept state: it goes on above.
        let mut kept = Authenticator::new(mono.clone());
        kept.restore(&tx.replay_state());
        let above = signed(&mut kept, at(1));
        assert_eq!(
            rx.check(at(1), sender(), &above.0, Some(&above.1)),
            Verdict::Authenticated
        );
        // The documented recovery for a lost sender state: the receivers forget theirs
        // (their state file removed, then restarted) and take the sender's clock again.
        let mut recovered = Authenticator::new(mono);
        let behind = signed(&mut lost, at(2));
        assert_eq!(
            recovered.check(at(2), sender(), &behind.0, Some(&behind.1)),
            Verdict::Authenticated
        );
    }

    #[test]
    fn the_store_says_when_something_changed_and_keeps_the_last_state() {
        let store = ReplayStore::default();
        assert!(store.take_changed().is_none());
        let state = ReplayState {
            last_sent: 5,
            marks: vec![(sender(), 9)],
        };
        store.put("VI_1", state.clone());
        assert_eq!(store.take_changed().unwrap()["VI_1"], state);
        store.put("VI_1", state.clone());
        assert!(
            store.take_changed().is_none(),
            "the same state is no change"
        );
        assert_eq!(store.get("VI_1"), Some(state));
    }

    #[test]
    fn a_writer_waiting_for_the_store_wakes_on_a_change_only() {
        use std::future::Future;
        use std::task::{Context, Waker};
        let store = ReplayStore::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut waiting = std::pin::pin!(store.changed());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "nothing changed"
        );
        let state = ReplayState {
            last_sent: 1,
            marks: Vec::new(),
        };
        store.put("VI_1", state.clone());
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(store.take_changed().is_some());
        // A change made while nobody waited is not lost.
        store.put(
            "VI_1",
            ReplayState {
                last_sent: 2,
                ..state
            },
        );
        let mut later = std::pin::pin!(store.changed());
        assert!(later.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn clock_stepped_back_restarts_from_the_clock_in_time_mode_only() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let ahead = tx.sign(at(3600)).unwrap().2;
        let now = tx.sign(at(0)).unwrap().2;
        assert_eq!(now, clock_sequence(at(0)));
        let mut mono = config(Mode::Enforce, &[(1, KEY_1)], 1);
        mono.anti_replay = AntiReplay::Monotonic;
        let mut tx = Authenticator::new(mono);
        let ahead_mono = tx.sign(at(3600)).unwrap().2;
        assert_eq!(ahead, ahead_mono);
        assert_eq!(tx.sign(at(0)).unwrap().2, ahead_mono + 1);
    }

    #[test]
    fn forged_wrong_key_unknown_key_missing_malformed_and_stale_each_counted() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let mut rx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let (message, trailer) = signed(&mut tx, at(0));

        let mut forged = trailer.clone();
        forged[TRAILER_LEN - 1] ^= 0x80;
        assert_eq!(
            rx.check(at(0), sender(), &message, Some(&forged)),
            Verdict::Dropped(AuthFailure::BadHmac)
        );
        let mut altered = message.clone();
        altered[2] = 254; // priority
        assert_eq!(
            rx.check(at(0), sender(), &altered, Some(&trailer)),
            Verdict::Dropped(AuthFailure::BadHmac)
        );
        // Same key id, another secret.
        let mut other = Authenticator::new(config(Mode::Enforce, &[(1, KEY_2)], 1));
        let (m, t) = signed(&mut other, at(0));
        assert_eq!(
            rx.check(at(0), sender(), &m, Some(&t)),
            Verdict::Dropped(AuthFailure::BadHmac)
        );
        let mut unknown = Authenticator::new(config(Mode::Enforce, &[(9, KEY_1)], 9));
        let (m, t) = signed(&mut unknown, at(0));
        assert_eq!(
            rx.check(at(0), sender(), &m, Some(&t)),
            Verdict::Dropped(AuthFailure::UnknownKey)
        );
        assert_eq!(
            rx.check(at(0), sender(), &message, None),
            Verdict::Dropped(AuthFailure::Missing)
        );
        let mut malformed = trailer.clone();
        malformed[0] = 7;
        assert_eq!(
            rx.check(at(0), sender(), &message, Some(&malformed)),
            Verdict::Dropped(AuthFailure::Malformed)
        );
        assert_eq!(
            rx.check(at(6), sender(), &message, Some(&trailer)),
            Verdict::Dropped(AuthFailure::Stale)
        );
        // None of the failures moved the mark: the genuine one still passes.
        assert_eq!(
            rx.check(at(5), sender(), &message, Some(&trailer)),
            Verdict::Authenticated
        );
    }

    #[test]
    fn permissive_and_receive_only_accept_and_report() {
        for mode in [Mode::Permissive, Mode::ReceiveOnly] {
            let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
            let mut rx = Authenticator::new(config(mode, &[(1, KEY_1)], 1));
            let (message, trailer) = signed(&mut tx, at(0));
            assert_eq!(
                rx.check(at(0), sender(), &message, None),
                Verdict::Accepted(AuthFailure::Missing)
            );
            let mut forged = trailer.clone();
            forged[20] ^= 1;
            assert_eq!(
                rx.check(at(0), sender(), &message, Some(&forged)),
                Verdict::Accepted(AuthFailure::BadHmac)
            );
            assert_eq!(
                rx.check(at(0), sender(), &message, Some(&trailer)),
                Verdict::Authenticated
            );
            assert_eq!(
                rx.check(at(0), sender(), &message, Some(&trailer)),
                Verdict::Accepted(AuthFailure::Replay)
            );
        }
        let mut receive_only = Authenticator::new(config(Mode::ReceiveOnly, &[(1, KEY_1)], 1));
        assert!(receive_only.sign(at(0)).is_none());
    }

    #[test]
    fn rotation_accepts_old_and_new_key_ids() {
        let mut rx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1), (2, KEY_2)], 2));
        let mut old = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let mut new = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1), (2, KEY_2)], 2));
        let (m, t) = signed(&mut old, at(0));
        assert_eq!(t[1], 1);
        assert_eq!(
            rx.check(at(0), sender(), &m, Some(&t)),
            Verdict::Authenticated
        );
        let (m, t) = signed(&mut new, at(1));
        assert_eq!(t[1], 2);
        assert_eq!(
            rx.check(at(1), sender(), &m, Some(&t)),
            Verdict::Authenticated
        );
        // A reload to [new] keeps the mark: the old capture stays a replay,
        // and key 1 is gone.
        rx.reconfigure(config(Mode::Enforce, &[(2, KEY_2)], 2));
        assert_eq!(
            rx.check(at(1), sender(), &m, Some(&t)),
            Verdict::Dropped(AuthFailure::Replay)
        );
        let (m, t) = signed(&mut old, at(2));
        assert_eq!(
            rx.check(at(2), sender(), &m, Some(&t)),
            Verdict::Dropped(AuthFailure::UnknownKey)
        );
    }

    #[test]
    fn marks_are_per_source_and_bounded() {
        let mut tx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let mut rx = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let advert = advert();
        let (key, id, sequence) = tx.sign(at(0)).unwrap();
        let mut sources = Vec::new();
        for n in 0..(MAX_SENDERS as u8 + 4) {
            let source = IpAddr::V4(Ipv4Addr::new(10, 0, 1, n));
            let mut buf = vec![0; advert.buffer_len() + TRAILER_LEN];
            advert.emit_signed(
                &mut buf,
                source,
                IpAddr::V4(VRRP_MULTICAST_V4),
                &key,
                id,
                sequence,
            );
            let (m, t) = buf.split_at(advert.buffer_len());
            // The same sequence from another source is not a replay.
            assert_eq!(rx.check(at(0), source, m, Some(t)), Verdict::Authenticated);
            sources.push((source, m.to_vec(), t.to_vec()));
        }
        assert_eq!(rx.marks.len(), MAX_SENDERS);
        // The most recent sender is remembered.
        let (source, m, t) = sources.last().unwrap();
        assert_eq!(
            rx.check(at(0), *source, m, Some(t)),
            Verdict::Dropped(AuthFailure::Replay)
        );
    }

    #[test]
    fn router_counts_each_verdict_under_its_own_name() {
        use crate::router::{DropReason, GarpConfig, Router, RouterConfig};
        let mut router = Router::new(RouterConfig {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            advert_interval_centis: 100,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            virtual_addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
            excluded_addresses: Vec::new(),
            auth: Auth::None,
            garp: GarpConfig::default(),
        });
        assert!(router.record_auth(Verdict::Authenticated));
        assert!(router.record_auth(Verdict::Accepted(AuthFailure::BadHmac)));
        assert!(!router.record_auth(Verdict::Dropped(AuthFailure::Replay)));
        assert!(!router.record_auth(Verdict::Dropped(AuthFailure::Replay)));
        let stats = router.stats();
        assert_eq!(stats.adverts_authenticated, 1);
        assert_eq!(stats.auth_accepted[&AuthFailure::BadHmac], 1);
        assert_eq!(stats.drops[&DropReason::Auth(AuthFailure::Replay)], 2);
        assert_eq!(
            DropReason::Auth(AuthFailure::Replay).as_str(),
            "auth_replay"
        );
        let names: Vec<_> = AuthFailure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "auth_missing",
                "auth_malformed",
                "auth_stale",
                "auth_unknown_key",
                "auth_bad_hmac",
                "auth_replay",
                "auth_unexpected"
            ]
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let auth = Authenticator::new(config(Mode::Enforce, &[(1, KEY_1)], 1));
        let text = format!("{auth:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("17, 17"));
    }
}
