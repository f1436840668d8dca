//! The front-end-neutral, unvalidated shape of a configuration: every value a
//! front-end read, still in its raw form (integers as `i64`, durations as
//! seconds in `f64`, addresses as text), each with the place it came from.
//! Front-ends check syntax and types only; `validate` turns a [`Draft`] into a
//! [`Model`](crate::Model) and owns every semantic rule.

use std::sync::Arc;

use crate::error::Loc;

/// A raw value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) loc: Loc,
}

/// A whole configuration as read.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) file: Arc<str>,
    /// `global_defs.vrrp_version`.
    pub(crate) default_version: Option<Located<i64>>,
    pub(crate) instances: Vec<InstanceDraft>,
    pub(crate) virtual_servers: Vec<VirtualServerDraft>,
}

/// One `vrrp_instance` as read. `None` means absent or already reported as
/// malformed by the front-end; `present` lists the keys that were written at
/// all, so a malformed required key is not also reported as missing.
#[derive(Debug)]
pub(crate) struct InstanceDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Vec<&'static str>,
    pub(crate) name: Option<Located<String>>,
    pub(crate) interface: Option<Located<String>>,
    pub(crate) virtual_router_id: Option<Located<i64>>,
    pub(crate) priority: Option<Located<i64>>,
    /// Seconds.
    pub(crate) advert_int: Option<Located<f64>>,
    pub(crate) version: Option<Located<i64>>,
    pub(crate) virtual_ipaddress: Option<Located<Vec<Located<String>>>>,
    pub(crate) nopreempt: Option<Located<bool>>,
    /// Seconds.
    pub(crate) preempt_delay: Option<Located<f64>>,
    pub(crate) accept: Option<Located<bool>>,
    pub(crate) unicast_src_ip: Option<Located<String>>,
    pub(crate) unicast_peer: Option<Located<Vec<Located<String>>>>,
    /// Seconds.
    pub(crate) garp_master_delay: Option<Located<f64>>,
    pub(crate) garp_master_repeat: Option<Located<i64>>,
    /// Seconds.
    pub(crate) garp_master_refresh: Option<Located<f64>>,
    /// Seconds.
    pub(crate) garp_interval: Option<Located<f64>>,
    pub(crate) authentication: Option<Located<AuthDraft>>,
}

impl InstanceDraft {
    /// An instance with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        InstanceDraft {
            loc,
            present: Vec::new(),
            name: None,
            interface: None,
            virtual_router_id: None,
            priority: None,
            advert_int: None,
            version: None,
            virtual_ipaddress: None,
            nopreempt: None,
            preempt_delay: None,
            accept: None,
            unicast_src_ip: None,
            unicast_peer: None,
            garp_master_delay: None,
            garp_master_repeat: None,
            garp_master_refresh: None,
            garp_interval: None,
            authentication: None,
        }
    }
}

/// An `authentication` block as read.
#[derive(Debug, Default)]
pub(crate) struct AuthDraft {
    pub(crate) present: Vec<&'static str>,
    pub(crate) auth_type: Option<Located<String>>,
    pub(crate) auth_pass: Option<Located<String>>,
}

/// One `[[virtual_server]]` as read. Synonym keys (`lb_algo` / `lvs_sched`,
/// `lb_kind` / `lvs_method`) keep the spelling used, for messages.
#[derive(Debug)]
pub(crate) struct VirtualServerDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Vec<&'static str>,
    pub(crate) ip: Option<Located<String>>,
    pub(crate) port: Option<Located<i64>>,
    pub(crate) fwmark: Option<Located<i64>>,
    pub(crate) protocol: Option<Located<String>>,
    /// (key as written, value).
    pub(crate) scheduler: Vec<(&'static str, Located<String>)>,
    /// (key as written, value).
    pub(crate) method: Vec<(&'static str, Located<String>)>,
    /// Seconds.
    pub(crate) persistence_timeout: Option<Located<f64>>,
    pub(crate) persistence_granularity: Option<Located<String>>,
    pub(crate) ops: Option<Located<bool>>,
    /// Seconds.
    pub(crate) delay_loop: Option<Located<f64>>,
    pub(crate) real_servers: Vec<RealServerDraft>,
}

impl VirtualServerDraft {
    /// A virtual server with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        VirtualServerDraft {
            loc,
            present: Vec::new(),
            ip: None,
            port: None,
            fwmark: None,
            protocol: None,
            scheduler: Vec::new(),
            method: Vec::new(),
            persistence_timeout: None,
            persistence_granularity: None,
            ops: None,
            delay_loop: None,
            real_servers: Vec::new(),
        }
    }
}

/// One `[[virtual_server.real_server]]` as read.
#[derive(Debug)]
pub(crate) struct RealServerDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Vec<&'static str>,
    pub(crate) ip: Option<Located<String>>,
    pub(crate) port: Option<Located<i64>>,
    pub(crate) weight: Option<Located<i64>>,
    pub(crate) uthreshold: Option<Located<i64>>,
    pub(crate) lthreshold: Option<Located<i64>>,
}
