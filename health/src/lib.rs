//! Health checkers for the real servers behind a virtual server, with keepalived's names and
//! semantics, and the scheduler that runs many of them.
//!
//! * [`Checker`] is the one trait every kind plugs into: `check()` returns a boxed future
//!   resolving to a [`CheckOutcome`], so `Arc<dyn Checker>` works without `async-trait`.
//! * Kinds: [`tcp::TcpCheck`] (`TCP_CHECK`), [`http::HttpCheck`] (`HTTP_GET` / `SSL_GET`),
//!   [`misc::MiscCheck`] (`MISC_CHECK`), [`dns::DnsCheck`] (`DNS_CHECK`).
//! * [`state::HealthState`] is the pure, sans-IO state machine (keepalived's `retry` /
//!   `delay_before_retry` / `alpha` / `omega`, plus `rise` / `fall` hysteresis): fed outcomes
//!   and `now`, it returns transitions and the next due time.
//! * [`scheduler`] runs thousands of checks from one task: a binary heap of deadlines, one
//!   sleep, a bounded number of checks in flight, first runs spread with jitter.
//!
//! This crate knows nothing about IPVS, VRRP or the config file: `src/` builds the checkers
//! from the model and turns [`state::Transition`]s into desired-table changes.

pub mod checker;
pub mod dns;
pub mod http;
pub mod launcher;
pub mod misc;
pub mod ping;
pub mod scheduler;
pub mod smtp;
pub mod state;
pub mod tcp;
pub mod udp;

/// Path security moved to the shared script vetting crate; kept here under its old name.
pub use haldir_scripts::path_security;

use std::future::Future;
use std::pin::Pin;

pub use scheduler::{
    initially_up, spawn_scheduler, CheckId, Event, NewCheck, SchedulerConfig, SchedulerHandle,
    StatsSnapshot,
};
pub use state::{CheckTiming, HealthState, Transition};

/// What one run of a checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The server answered as required.
    Up,
    /// `MISC_CHECK` with `misc_dynamic`: up, and the script asks for this weight
    /// (its exit status minus 2).
    UpWithWeight(u32),
    /// The server failed the check; the reason is for logs and the control socket.
    Down(String),
}

impl CheckOutcome {
    /// True for [`CheckOutcome::Up`] and [`CheckOutcome::UpWithWeight`].
    pub fn is_up(&self) -> bool {
        !matches!(self, CheckOutcome::Down(_))
    }
}

/// The future a [`Checker`] returns: boxed so the trait stays object-safe.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>>;

/// One health check of one real server. Implementations hold their (validated) settings and
/// do one attempt per `check()` call; retries, hysteresis and timing belong to
/// [`HealthState`] and the scheduler, not to the checker.
pub trait Checker: Send + Sync + 'static {
    /// Run the check once. The future must finish by itself (each kind applies its own
    /// `connect_timeout` / `misc_timeout`); dropping it must release everything it holds
    /// (sockets closed, a script's process group killed).
    fn check(&self) -> CheckFuture<'_>;

    /// keepalived's keyword for this kind (`"TCP_CHECK"`, `"HTTP_GET"`, ...), for logs.
    fn kind(&self) -> &'static str;

    /// keepalived's default `retry` for this kind (1; `MISC_CHECK` 0; `DNS_CHECK` 3), for the
    /// wiring to use when the config gives none.
    fn default_retry(&self) -> u32 {
        1
    }
}
