//! The front-end-neutral, unvalidated shape of a configuration: every value a
//! front-end read, still in its raw form (integers as `i64`, durations as
//! seconds in `f64`, addresses as text), each with the place it came from.
//! Front-ends check syntax and types only; `validate` turns a [`Draft`] into a
//! [`Model`](crate::Model) and owns every semantic rule.

use crate::error::{FileName, Loc};

/// The keywords written in one block, in order, so that validation can tell a keyword
/// left out from one written with a bad value. A block of the common kinds writes four
/// or fewer (a real server: its address, port, weight and checker), held inline: a list
/// of its own for each was an allocation and a free per block (90,000 of each at 10,000
/// virtual servers × 4 real servers with checkers).
pub(crate) type Present = smallvec::SmallVec<[&'static str; 4]>;

/// A raw value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) loc: Loc,
}

/// A whole configuration as read.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub(crate) file: FileName,
    /// `global_defs.vrrp_version`.
    pub(crate) default_version: Option<Located<i64>>,
    /// `global_defs.router_id`.
    pub(crate) router_id: Option<Located<String>>,
    /// `global_defs.script_user` and `global_defs.notify_timeout`.
    pub(crate) scripts: ScriptsDraft,
    pub(crate) instances: Vec<InstanceDraft>,
    /// The virtual servers, in file order.
    pub(crate) virtual_servers: Vec<VirtualServerSlot>,
    /// The `vrrp_script`s, in file order.
    pub(crate) vrrp_scripts: Vec<VrrpScriptDraft>,
    /// The `vrrp_sync_group`s, in file order.
    pub(crate) sync_groups: Vec<SyncGroupDraft>,
    /// `global_defs.lvs_sync_daemon`.
    pub(crate) lvs_sync_daemon: Option<crate::lvs_sync::LvsSyncDraft>,
    /// The `track_file` blocks, in file order.
    pub(crate) track_files: Vec<crate::track_file::TrackFileDraft>,
    /// The `track_process` blocks, in file order.
    pub(crate) track_processes: Vec<crate::track_process::TrackProcessDraft>,
    /// `global_defs.dynamic_interfaces`.
    pub(crate) dynamic_interfaces: Option<Located<bool>>,
    /// keepalived's top-level `static_ipaddress`, `static_routes`, `static_rules`.
    pub(crate) static_ipaddress: Option<Located<Vec<Located<String>>>>,
    pub(crate) static_routes: Option<Located<Vec<Located<String>>>>,
    pub(crate) static_rules: Option<Located<Vec<Located<String>>>>,
    /// `global_defs.lvs_timeouts` as written (`tcp N tcpfin N udp N`).
    pub(crate) lvs_timeouts: Option<Located<Vec<String>>>,
    /// `global_defs`' notify FIFOs and their scripts.
    pub(crate) notify_fifos: crate::notify_fifo::NotifyFifosDraft,
    /// `[announce]` (TOML only).
    pub(crate) announce: Option<crate::announce::AnnounceDraft>,
}

impl Draft {
    /// An empty configuration of `file`.
    pub(crate) fn new(file: FileName) -> Self {
        Draft {
            file,
            default_version: None,
            router_id: None,
            scripts: ScriptsDraft::default(),
            instances: Vec::new(),
            virtual_servers: Vec::new(),
            vrrp_scripts: Vec::new(),
            sync_groups: Vec::new(),
            lvs_sync_daemon: None,
            track_files: Vec::new(),
            track_processes: Vec::new(),
            dynamic_interfaces: None,
            static_ipaddress: None,
            static_routes: None,
            static_rules: None,
            lvs_timeouts: None,
            notify_fifos: Default::default(),
            announce: None,
        }
    }
}

/// A virtual server as a front-end hands it to validation: still a draft, or already
/// validated. keepalived.conf's front validates a `virtual_server` block as soon as its `}`
/// is read when nothing else in the file can change what it means (it runs no script, so
/// `global_defs`' script settings, which may come later, do not apply to it): at 10,000
/// services the drafts of the whole file never exist at once.
#[derive(Debug, Clone)]
pub(crate) enum VirtualServerSlot {
    /// To be validated with the whole file.
    Draft(Box<VirtualServerDraft>),
    /// Validated where it was read.
    Checked(crate::model::VirtualServer),
    /// Validated where it was read, with errors (in the front-end's error list).
    Invalid,
}

/// One `vrrp_sync_group` as read.
#[derive(Debug, Clone)]
pub(crate) struct SyncGroupDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
    pub(crate) name: Option<Located<String>>,
    /// `group`: the member instances.
    pub(crate) group: Option<Located<Vec<Located<String>>>>,
    /// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify`.
    pub(crate) notify: NotifyDraft,
    /// keepalived's `sync_group_tracking_weight` (or the older `global_tracking`): the
    /// members keep their tracking weights.
    pub(crate) tracking_weight: bool,
}

impl SyncGroupDraft {
    /// A group with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        SyncGroupDraft {
            loc,
            present: Present::new(),
            name: None,
            group: None,
            notify: NotifyDraft::default(),
            tracking_weight: false,
        }
    }
}

/// `global_defs` settings of scripts, as read.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScriptsDraft {
    /// `script_user`: "USER" or "USER GROUP".
    pub(crate) script_user: Option<Located<String>>,
    /// `notify_timeout`, seconds.
    pub(crate) notify_timeout: Option<Located<f64>>,
    /// `enable_script_security`.
    pub(crate) enable_script_security: Option<Located<bool>>,
}

/// An instance's notify scripts as read (command lines).
#[derive(Debug, Default, Clone)]
pub(crate) struct NotifyDraft {
    pub(crate) master: Option<Located<String>>,
    pub(crate) backup: Option<Located<String>>,
    pub(crate) fault: Option<Located<String>>,
    pub(crate) stop: Option<Located<String>>,
    pub(crate) notify: Option<Located<String>>,
}

/// One `vrrp_instance` as read. `None` means absent or already reported as
/// malformed by the front-end; `present` lists the keys that were written at
/// all, so a malformed required key is not also reported as missing.
#[derive(Debug, Clone)]
pub(crate) struct InstanceDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
    pub(crate) name: Option<Located<String>>,
    pub(crate) interface: Option<Located<String>>,
    pub(crate) virtual_router_id: Option<Located<i64>>,
    pub(crate) priority: Option<Located<i64>>,
    /// Seconds.
    pub(crate) advert_int: Option<Located<f64>>,
    pub(crate) version: Option<Located<i64>>,
    pub(crate) virtual_ipaddress: Option<Located<Vec<Located<String>>>>,
    pub(crate) virtual_ipaddress_excluded: Option<Located<Vec<Located<String>>>>,
    pub(crate) virtual_routes: Option<Located<Vec<Located<String>>>>,
    pub(crate) virtual_rules: Option<Located<Vec<Located<String>>>>,
    pub(crate) use_vmac: Option<Located<Vec<String>>>,
    pub(crate) vmac_xmit_base: Option<Located<bool>>,
    pub(crate) nopreempt: Option<Located<bool>>,
    /// Seconds.
    pub(crate) preempt_delay: Option<Located<f64>>,
    pub(crate) accept: Option<Located<bool>>,
    pub(crate) unicast_src_ip: Option<Located<String>>,
    pub(crate) unicast_peer: Option<Located<Vec<Located<String>>>>,
    /// Seconds.
    pub(crate) garp_master_delay: Option<Located<f64>>,
    pub(crate) garp_master_repeat: Option<Located<i64>>,
    pub(crate) garp_master_refresh_repeat: Option<Located<i64>>,
    /// Seconds.
    pub(crate) garp_master_refresh: Option<Located<f64>>,
    /// Seconds.
    pub(crate) garp_interval: Option<Located<f64>>,
    pub(crate) authentication: Option<Located<AuthDraft>>,
    /// `auth_hmac`.
    pub(crate) auth_hmac: Option<Located<crate::auth_hmac::AuthHmacDraft>>,
    /// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`, `notify`.
    pub(crate) notify: NotifyDraft,
    /// `track_script`: the `vrrp_script`s this instance follows.
    pub(crate) track_script: Option<Located<Vec<TrackScriptDraft>>>,
    /// `track_interface`: interfaces that must be up, or whose state moves the priority.
    pub(crate) track_interface: Option<Located<Vec<TrackEntryDraft>>>,
    /// `track_file`: the `track_file` blocks this instance follows.
    pub(crate) track_file: Option<Located<Vec<TrackEntryDraft>>>,
    /// `track_process`: the `track_process` blocks this instance follows.
    pub(crate) track_process: Option<Located<Vec<TrackEntryDraft>>>,
}

/// One entry of an instance's `track_interface` or `track_file` list: a name with an
/// optional weight and direction (`reverse` / `noreverse`).
#[derive(Debug, Clone)]
pub(crate) struct TrackEntryDraft {
    pub(crate) loc: Loc,
    pub(crate) name: Option<Located<String>>,
    pub(crate) weight: Option<Located<i64>>,
    pub(crate) reverse: Option<Located<bool>>,
}

impl InstanceDraft {
    /// An instance with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        InstanceDraft {
            loc,
            present: Present::new(),
            name: None,
            interface: None,
            virtual_router_id: None,
            priority: None,
            advert_int: None,
            version: None,
            virtual_ipaddress: None,
            virtual_ipaddress_excluded: None,
            virtual_routes: None,
            virtual_rules: None,
            use_vmac: None,
            vmac_xmit_base: None,
            nopreempt: None,
            preempt_delay: None,
            accept: None,
            unicast_src_ip: None,
            unicast_peer: None,
            garp_master_delay: None,
            garp_master_repeat: None,
            garp_master_refresh_repeat: None,
            garp_master_refresh: None,
            garp_interval: None,
            authentication: None,
            auth_hmac: None,
            notify: NotifyDraft::default(),
            track_script: None,
            track_interface: None,
            track_file: None,
            track_process: None,
        }
    }
}

/// An `authentication` block as read.
#[derive(Debug, Default, Clone)]
pub(crate) struct AuthDraft {
    pub(crate) present: Present,
    pub(crate) auth_type: Option<Located<String>>,
    pub(crate) auth_pass: Option<Located<String>>,
}

/// One `[[virtual_server]]` as read. Synonym keys (`lb_algo` / `lvs_sched`,
/// `lb_kind` / `lvs_method`) keep the spelling used, for messages.
#[derive(Debug, Clone)]
pub(crate) struct VirtualServerDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
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
    /// Seconds.
    pub(crate) delay_loop: Option<Located<f64>>,
    pub(crate) real_servers: Vec<RealServerDraft>,
    /// The settings few virtual servers have, allocated only when one is written (as
    /// [`RealServerDraft`]'s): they are two thirds of the draft's size.
    extras: Option<Box<VirtualServerExtras>>,
}

/// The settings of a virtual server that most leave unset.
#[derive(Debug, Clone)]
pub(crate) struct VirtualServerExtras {
    pub(crate) persistence_granularity: Option<Located<String>>,
    pub(crate) ops: Option<Located<bool>>,
    /// Scheduler flags by name (`mh-port`, `flag-1`, ...), as written.
    pub(crate) scheduler_flags: Vec<Located<String>>,
    /// Checker defaults for every real server (`connect_timeout`, `retry`,
    /// `delay_before_retry`, `warmup`, `alpha`); its `delay_loop` stays `None`
    /// (the virtual server's is [`VirtualServerDraft::delay_loop`]).
    pub(crate) check_defaults: CheckDefaultsDraft,
    pub(crate) quorum: Option<Located<i64>>,
    pub(crate) hysteresis: Option<Located<i64>>,
    pub(crate) sorry_server: Option<Located<SorryServerDraft>>,
    pub(crate) sorry_server_inhibit: Option<Located<bool>>,
    pub(crate) inhibit_on_failure: Option<Located<bool>>,
    pub(crate) omega: Option<Located<bool>>,
    /// `virtualhost`: default for the HTTP_GET / SSL_GET checkers.
    pub(crate) virtualhost: Option<Located<String>>,
    /// `quorum_up` / `quorum_down`: command lines.
    pub(crate) quorum_up: Option<Located<String>>,
    pub(crate) quorum_down: Option<Located<String>>,
}

impl VirtualServerExtras {
    const NONE: VirtualServerExtras = VirtualServerExtras {
        persistence_granularity: None,
        ops: None,
        scheduler_flags: Vec::new(),
        check_defaults: CheckDefaultsDraft::NONE,
        quorum: None,
        hysteresis: None,
        sorry_server: None,
        sorry_server_inhibit: None,
        inhibit_on_failure: None,
        omega: None,
        virtualhost: None,
        quorum_up: None,
        quorum_down: None,
    };
}

/// What [`VirtualServerDraft::extras`] reads when none were written.
static NO_VIRTUAL_SERVER_EXTRAS: VirtualServerExtras = VirtualServerExtras::NONE;

impl VirtualServerDraft {
    /// A virtual server with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        VirtualServerDraft {
            loc,
            present: Present::new(),
            ip: None,
            port: None,
            fwmark: None,
            protocol: None,
            scheduler: Vec::new(),
            method: Vec::new(),
            persistence_timeout: None,
            delay_loop: None,
            real_servers: Vec::new(),
            extras: None,
        }
    }

    /// The rarely written settings (all unset if none was written).
    pub(crate) fn extras(&self) -> &VirtualServerExtras {
        self.extras.as_deref().unwrap_or(&NO_VIRTUAL_SERVER_EXTRAS)
    }

    /// Whether validating it reads `global_defs`' script settings (`script_user`,
    /// `enable_script_security`): it names a script to run (`quorum_up` / `quorum_down`, a
    /// real server's `notify_up` / `notify_down`, a `MISC_CHECK`).
    pub(crate) fn runs_scripts(&self) -> bool {
        let extras = self.extras();
        extras.quorum_up.is_some()
            || extras.quorum_down.is_some()
            || self.real_servers.iter().any(|rs| {
                rs.extras().notify_up.is_some()
                    || rs.extras().notify_down.is_some()
                    || rs.checks.iter().any(|c| c.kind == CheckKindDraft::Misc)
            })
    }

    /// The rarely written settings, to write one.
    pub(crate) fn extras_mut(&mut self) -> &mut VirtualServerExtras {
        self.extras
            .get_or_insert_with(|| Box::new(VirtualServerExtras::NONE))
    }
}

/// One `[[virtual_server.real_server]]` as read.
#[derive(Debug, Clone)]
pub(crate) struct RealServerDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
    pub(crate) ip: Option<Located<String>>,
    pub(crate) port: Option<Located<i64>>,
    pub(crate) weight: Option<Located<i64>>,
    /// The health checkers, in file order.
    pub(crate) checks: Vec<CheckDraft>,
    /// The settings few real servers have, allocated only when one is written: they are
    /// three quarters of the draft's size, and a 10,000-service file has 40,000 drafts.
    extras: Option<Box<RealServerExtras>>,
}

/// The settings of a real server that most leave unset.
#[derive(Debug, Clone)]
pub(crate) struct RealServerExtras {
    pub(crate) uthreshold: Option<Located<i64>>,
    pub(crate) lthreshold: Option<Located<i64>>,
    /// Checker defaults for this real server's checkers (override the virtual server's).
    pub(crate) check_defaults: CheckDefaultsDraft,
    pub(crate) inhibit_on_failure: Option<Located<bool>>,
    /// `virtualhost`: default for this real server's HTTP_GET / SSL_GET checkers.
    pub(crate) virtualhost: Option<Located<String>>,
    /// `notify_up` / `notify_down`: command lines.
    pub(crate) notify_up: Option<Located<String>>,
    pub(crate) notify_down: Option<Located<String>>,
}

impl RealServerExtras {
    const NONE: RealServerExtras = RealServerExtras {
        uthreshold: None,
        lthreshold: None,
        check_defaults: CheckDefaultsDraft::NONE,
        inhibit_on_failure: None,
        virtualhost: None,
        notify_up: None,
        notify_down: None,
    };
}

/// What [`RealServerDraft::extras`] reads when none were written.
static NO_REAL_SERVER_EXTRAS: RealServerExtras = RealServerExtras::NONE;

impl RealServerDraft {
    /// A real server with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        RealServerDraft {
            loc,
            present: Present::new(),
            ip: None,
            port: None,
            weight: None,
            checks: Vec::new(),
            extras: None,
        }
    }

    /// The rarely written settings (all unset if none was written).
    pub(crate) fn extras(&self) -> &RealServerExtras {
        self.extras.as_deref().unwrap_or(&NO_REAL_SERVER_EXTRAS)
    }

    /// The rarely written settings, to write one.
    pub(crate) fn extras_mut(&mut self) -> &mut RealServerExtras {
        self.extras
            .get_or_insert_with(|| Box::new(RealServerExtras::NONE))
    }
}

/// The checker settings keepalived accepts at three levels (virtual server,
/// real server, checker); the innermost one written wins.
#[derive(Debug, Default, Clone)]
pub(crate) struct CheckDefaultsDraft {
    /// Seconds.
    pub(crate) connect_timeout: Option<Located<f64>>,
    /// `retry` (or its old name `nb_get_retry`).
    pub(crate) retry: Option<Located<i64>>,
    /// Seconds.
    pub(crate) delay_before_retry: Option<Located<f64>>,
    /// Seconds.
    pub(crate) warmup: Option<Located<f64>>,
    /// Seconds.
    pub(crate) delay_loop: Option<Located<f64>>,
    pub(crate) alpha: Option<Located<bool>>,
}

impl CheckDefaultsDraft {
    /// Nothing set (the `Default`, usable in a constant).
    pub(crate) const NONE: CheckDefaultsDraft = CheckDefaultsDraft {
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        delay_loop: None,
        alpha: None,
    };
}

/// `sorry_server`: `"IP PORT"` / `"IP"` as text, or a table `{ ip, port }`.
#[derive(Debug, Default, Clone)]
pub(crate) struct SorryServerDraft {
    /// The text form, when written as a string.
    pub(crate) text: Option<Located<String>>,
    pub(crate) ip: Option<Located<String>>,
    pub(crate) port: Option<Located<i64>>,
}

/// Which checker a [`CheckDraft`] is, by keepalived's keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckKindDraft {
    Tcp,
    Http,
    Ssl,
    Misc,
    Dns,
    Smtp,
    Udp,
    Ping,
}

impl CheckKindDraft {
    /// keepalived's keyword.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            CheckKindDraft::Tcp => "TCP_CHECK",
            CheckKindDraft::Http => "HTTP_GET",
            CheckKindDraft::Ssl => "SSL_GET",
            CheckKindDraft::Misc => "MISC_CHECK",
            CheckKindDraft::Dns => "DNS_CHECK",
            CheckKindDraft::Smtp => "SMTP_CHECK",
            CheckKindDraft::Udp => "UDP_CHECK",
            CheckKindDraft::Ping => "PING_CHECK",
        }
    }
}

/// One checker block of a real server as read. Which fields may be set
/// depends on `kind` (the front-end only fills the ones the kind has).
#[derive(Debug, Clone)]
pub(crate) struct CheckDraft {
    pub(crate) loc: Loc,
    pub(crate) kind: CheckKindDraft,
    pub(crate) present: Present,
    pub(crate) defaults: CheckDefaultsDraft,
    pub(crate) connect_ip: Option<Located<String>>,
    pub(crate) connect_port: Option<Located<i64>>,
    /// HTTP_GET / SSL_GET.
    pub(crate) urls: Vec<UrlDraft>,
    /// What few checkers set, held only once one is written ([`CheckDraft::extras`]): a
    /// draft with every field inline was 1,120 bytes, written and moved 40,000 times in a
    /// file of 10,000 virtual servers with a checker on each of four real servers.
    pub(crate) extras: Option<Box<CheckExtrasDraft>>,
}

/// The settings of a checker that most leave unset, or that only some kinds have.
#[derive(Debug, Clone)]
pub(crate) struct CheckExtrasDraft {
    pub(crate) bindto: Option<Located<String>>,
    pub(crate) bind_port: Option<Located<i64>>,
    pub(crate) virtualhost: Option<Located<String>>,
    /// SSL_GET: verify the server's certificate (system roots unless `ca_file`).
    pub(crate) verify: Option<Located<bool>>,
    pub(crate) ca_file: Option<Located<String>>,
    /// MISC_CHECK.
    pub(crate) misc_path: Option<Located<String>>,
    /// Seconds.
    pub(crate) misc_timeout: Option<Located<f64>>,
    pub(crate) misc_dynamic: Option<Located<bool>>,
    pub(crate) user: Option<Located<String>>,
    pub(crate) group: Option<Located<String>>,
    /// DNS_CHECK `type`.
    pub(crate) dns_type: Option<Located<String>>,
    /// DNS_CHECK `name`.
    pub(crate) dns_name: Option<Located<String>>,
    /// SMTP_CHECK `helo_name`.
    pub(crate) helo_name: Option<Located<String>>,
    /// UDP_CHECK `payload` (hex).
    pub(crate) payload: Option<Located<String>>,
    /// UDP_CHECK `require_reply [HEX]` (the text empty when no pattern is given).
    pub(crate) require_reply: Option<Located<String>>,
    pub(crate) min_reply_length: Option<Located<i64>>,
    pub(crate) max_reply_length: Option<Located<i64>>,
}

impl CheckExtrasDraft {
    const NONE: CheckExtrasDraft = CheckExtrasDraft {
        bindto: None,
        bind_port: None,
        virtualhost: None,
        verify: None,
        ca_file: None,
        misc_path: None,
        misc_timeout: None,
        misc_dynamic: None,
        user: None,
        group: None,
        dns_type: None,
        dns_name: None,
        helo_name: None,
        payload: None,
        require_reply: None,
        min_reply_length: None,
        max_reply_length: None,
    };
}

/// What [`CheckDraft::extras`] reads when none were written.
static NO_CHECK_EXTRAS: CheckExtrasDraft = CheckExtrasDraft::NONE;

impl CheckDraft {
    /// A checker of `kind` with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc, kind: CheckKindDraft) -> Self {
        CheckDraft {
            loc,
            kind,
            present: Present::new(),
            defaults: CheckDefaultsDraft::default(),
            connect_ip: None,
            connect_port: None,
            urls: Vec::new(),
            extras: None,
        }
    }

    /// The rarely written settings (all unset when none was written).
    pub(crate) fn extras(&self) -> &CheckExtrasDraft {
        self.extras.as_deref().unwrap_or(&NO_CHECK_EXTRAS)
    }

    /// The rarely written settings, to write one.
    pub(crate) fn extras_mut(&mut self) -> &mut CheckExtrasDraft {
        self.extras
            .get_or_insert_with(|| Box::new(CheckExtrasDraft::NONE))
    }
}

/// One `url` of an HTTP_GET / SSL_GET as read.
#[derive(Debug, Clone)]
pub(crate) struct UrlDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
    pub(crate) path: Option<Located<String>>,
    /// `status_code`: text ("200-299 404") or an integer written as text.
    pub(crate) status_code: Option<Located<String>>,
    pub(crate) digest: Option<Located<String>>,
    pub(crate) regex: Option<Located<String>>,
    pub(crate) regex_no_match: Option<Located<bool>>,
    pub(crate) virtualhost: Option<Located<String>>,
}

/// One `vrrp_script` as read.
#[derive(Debug, Clone)]
pub(crate) struct VrrpScriptDraft {
    pub(crate) loc: Loc,
    pub(crate) present: Present,
    pub(crate) name: Option<Located<String>>,
    pub(crate) script: Option<Located<String>>,
    /// Seconds.
    pub(crate) interval: Option<Located<f64>>,
    /// Seconds.
    pub(crate) timeout: Option<Located<f64>>,
    pub(crate) weight: Option<Located<i64>>,
    pub(crate) rise: Option<Located<i64>>,
    pub(crate) fall: Option<Located<i64>>,
    pub(crate) user: Option<Located<String>>,
    pub(crate) group: Option<Located<String>>,
    pub(crate) init_fail: Option<Located<bool>>,
}

impl VrrpScriptDraft {
    /// A script with nothing set, starting at `loc`.
    pub(crate) fn new(loc: Loc) -> Self {
        VrrpScriptDraft {
            loc,
            present: Present::new(),
            name: None,
            script: None,
            interval: None,
            timeout: None,
            weight: None,
            rise: None,
            fall: None,
            user: None,
            group: None,
            init_fail: None,
        }
    }
}

/// One `track_script` entry: a script name, with an optional weight that
/// overrides the script's own.
#[derive(Debug, Clone)]
pub(crate) struct TrackScriptDraft {
    pub(crate) loc: Loc,
    pub(crate) name: Option<Located<String>>,
    pub(crate) weight: Option<Located<i64>>,
}
