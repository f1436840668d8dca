//! The keepalived.conf front-end: reads keepalived's block syntax (see
//! [`read`] for comments, quotes and `include`, [`tree`] for blocks) and maps
//! the keywords haldir implements onto the same [`Draft`] the TOML front-end
//! builds, so validation and the resulting model are the same whichever
//! syntax the file is in.
//!
//! Every keyword is implemented, accepted with no effect (one warning per
//! keyword per file, naming it and its line:col: it changes nothing haldir
//! does), or an error naming it and its line:col; nothing that changes
//! behaviour is silently dropped. Keywords that are planned but not
//! implemented yet say so. [`keyword_table`] lists them all for KEEPALIVED.md.
//!
//! # Adding a keyword
//!
//! Each block has a [`BlockKeywords`] table (what is accepted, planned, or
//! accepted with no effect)
//! and one `match` from keyword to draft field: to support a planned keyword,
//! move it from `planned` to `accepted` and add its arm, reading it with the
//! value helpers ([`Front::integer`], [`Front::seconds`], [`Front::word`],
//! [`Front::flag`], [`Front::list_block`], or a block of its own like
//! [`Front::authentication`]). The places:
//!
//! - top level: [`TOP`] and [`Front::document`];
//! - `vrrp_instance`: [`INSTANCE`] and [`Front::instance`];
//! - `virtual_server` / `real_server`: [`VIRTUAL_SERVER`] / [`REAL_SERVER`]
//!   and [`Front::virtual_server`] / [`Front::real_server`]; their
//!   health-checking keywords, the checker blocks and `vrrp_script` /
//!   `track_script` are read in [`health`], whose tables list the keywords of
//!   the checker, `url` and `vrrp_script` blocks.

mod health;
mod read;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::draft::{
    AuthDraft, Draft, InstanceDraft, Located, RealServerDraft, SyncGroupDraft, VirtualServerDraft,
    VirtualServerSlot,
};
use crate::error::{ConfigError, FileName, Loc};
use crate::pieces::Pieces;
use crate::toml_front::edit_distance;

pub(crate) use read::MAX_INCLUDE_DEPTH;
use tree::{Block, Stmt, Word};

/// Reads keepalived.conf from `input`, called `file` in messages (at `canonical`
/// on disk, if known, for include-loop detection); relative includes are
/// resolved against `dir`.
///
/// `Err` holds the errors that make the file's structure unreadable (an
/// unclosed quote or block, a stray brace, an include that cannot be read or
/// loops), reported alone like a TOML syntax error, or the failure to read the
/// file itself. `Ok` holds the draft and the keyword errors, to be reported
/// together with validation's, and the included files with the `include` line
/// of each.
#[allow(clippy::type_complexity)]
pub(crate) fn read(
    input: &mut dyn Pieces,
    file: FileName,
    canonical: Option<PathBuf>,
    dir: &Path,
) -> Result<Reading, Vec<ConfigError>> {
    // Tokens become statements as they are read, and each top-level statement becomes
    // values as soon as it is complete: neither the token list nor the whole tree exists
    // at once. A structure error found later discards those values.
    let mut front = Front::default();
    let mut document = Document::new(file);
    let mut builder = tree::Builder::new(|stmt| front.top_statement(&mut document, stmt));
    let source = match read::read(input, file, canonical, dir, &mut |token| {
        builder.push(token)
    }) {
        Ok(source) => source,
        Err(e) => return Err(vec![ConfigError::unreadable(file, &e)]),
    };
    let tree_errors = builder.finish();
    let mut errors = source.errors;
    errors.extend(tree_errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let included = source.included;
    let draft = front.finish_document(document);
    Ok(Reading {
        draft,
        errors: front.errors,
        warnings: front.warnings,
        included,
    })
}

/// What [`read`] found in a file whose structure is readable.
pub(crate) struct Reading {
    /// The values read, for validation.
    pub(crate) draft: Draft,
    /// Keyword errors, reported with validation's.
    pub(crate) errors: Vec<ConfigError>,
    /// Keywords accepted with no effect: one per keyword per file.
    pub(crate) warnings: Vec<ConfigError>,
    /// Included files, each with its `include` line.
    pub(crate) included: Vec<(PathBuf, Loc)>,
}

/// Every keyword of every block's table, as (block, keyword, class, why):
/// class is `implemented`, `accepted, no effect (warning)` or `error`. The
/// table in KEEPALIVED.md is generated from it and a test keeps them equal.
pub(crate) fn keyword_table() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let blocks = [
        &TOP,
        &GLOBAL_DEFS,
        &INSTANCE,
        &SYNC_GROUP,
        &AUTHENTICATION,
        &AUTH_HMAC,
        &VIRTUAL_SERVER,
        &REAL_SERVER,
        &health::VRRP_SCRIPT,
        &health::TRACK_FILE,
        &health::TRACK_PROCESS,
        &health::TCP_CHECK,
        &health::HTTP_GET,
        &health::SSL_GET,
        &health::MISC_CHECK,
        &health::DNS_CHECK,
        &health::SMTP_CHECK,
        &health::UDP_CHECK,
        &health::PING_CHECK,
        &health::URL,
    ];
    let mut table = Vec::new();
    for block in blocks {
        for keyword in block.accepted {
            table.push((block.place, *keyword, "implemented", ""));
        }
        for (keyword, why) in block.ignored {
            table.push((block.place, *keyword, "accepted, no effect (warning)", *why));
        }
        for (keyword, why) in block.planned {
            table.push((block.place, *keyword, "error (not yet implemented)", *why));
        }
    }
    table
}

/// The keywords of one kind of block.
struct BlockKeywords {
    /// How messages name the block.
    place: &'static str,
    /// What haldir implements, in the order the docs list them.
    accepted: &'static [&'static str],
    /// keepalived keywords haldir will implement, with why not yet.
    planned: &'static [(&'static str, &'static str)],
    /// keepalived keywords haldir accepts and does not act on, with why that
    /// changes nothing haldir does; each is warned about once per file.
    ignored: &'static [(&'static str, &'static str)],
}

const TOP: BlockKeywords = BlockKeywords {
    place: "the top level",
    accepted: &[
        "global_defs",
        "vrrp_instance",
        "virtual_server",
        "include",
        "vrrp_sync_group",
        "vrrp_script",
        "virtual_server_group",
        "track_file",
        "vrrp_track_file",
        "track_process",
        "vrrp_track_process",
        "static_ipaddress",
        "static_routes",
        "static_rules",
    ],
    planned: &[
        ("linkbeat_use_polling", "link-beat polling is not implemented"),
        ("bfd_instance", "BFD is not implemented"),
    ],
    ignored: &[(
        "instance",
        "it names keepalived's pid and data files when several run on one host; haldir's files are named on its command line",
    )],
};

/// Why the mail keywords change nothing.
const MAIL_ALERTS: &str = "haldir sends no email alerts; watch its logs or notify scripts";

/// Why the process-tuning keywords change nothing.
const PROCESS_TUNING: &str =
    "haldir runs as one process and does not change its scheduling priority or lock its memory";

const GLOBAL_DEFS: BlockKeywords = BlockKeywords {
    place: "global_defs",
    accepted: &[
        "router_id",
        "dynamic_interfaces",
        "vrrp_version",
        "script_user",
        "notify_timeout",
        "enable_script_security",
        "lvs_sync_daemon",
        "default_interface",
        "vrrp_strict",
        "vrrp_garp_master_delay",
        "vrrp_garp_master_repeat",
        "vrrp_garp_master_refresh",
        "vrrp_garp_master_refresh_repeat",
        "vrrp_garp_interval",
        "vrrp_gna_interval",
        "lvs_timeouts",
        "notify_fifo",
        "notify_fifo_script",
        "vrrp_notify_fifo",
        "vrrp_notify_fifo_script",
        "lvs_notify_fifo",
        "lvs_notify_fifo_script",
        "fifo_write_vrrp_states_on_reload",
    ],
    planned: &[
        ("vrrp_garp_lower_prio_delay", "haldir has no special gratuitous ARP on a lower-priority advert"),
        ("vrrp_garp_lower_prio_repeat", "haldir has no special gratuitous ARP on a lower-priority advert"),
        ("vrrp_mcast_group4", "haldir sends to the RFC's multicast group 224.0.0.18 only"),
        ("vrrp_mcast_group6", "haldir sends to the RFC's multicast group ff02::12 only"),
        ("vrrp_iptables", "haldir does not manage firewall rules for no_accept this way"),
        ("vrrp_ipsets", "haldir does not manage ipsets"),
        ("nftables", "haldir does not manage nftables rules"),
        ("net_namespace", "running in another network namespace is not implemented; start haldir inside it (ip netns exec)"),
        ("lvs_sync_daemon_interface", "keepalived reads it only inside a vrrp_instance (its old syntax); in global_defs write `lvs_sync_daemon IF INSTANCE`"),
        ("vrrp_check_unicast_src", "checking unicast advert sources is not implemented"),
    ],
    ignored: &[
        ("notification_email", MAIL_ALERTS),
        ("notification_email_from", MAIL_ALERTS),
        ("smtp_server", MAIL_ALERTS),
        ("smtp_helo_name", MAIL_ALERTS),
        ("smtp_connect_timeout", MAIL_ALERTS),
        ("smtp_alert", MAIL_ALERTS),
        ("smtp_alert_vrrp", MAIL_ALERTS),
        ("smtp_alert_checker", MAIL_ALERTS),
        ("email_faults", MAIL_ALERTS),
        ("instance", "it names keepalived's pid and data files when several run on one host; haldir's files are named on its command line"),
        ("data_use_instance", "it names keepalived's data-dump files; haldir's dump paths are its own (SIGUSR1)"),
        ("max_auto_priority", PROCESS_TUNING),
        ("vrrp_priority", PROCESS_TUNING),
        ("checker_priority", PROCESS_TUNING),
        ("vrrp_no_swap", PROCESS_TUNING),
        ("checker_no_swap", PROCESS_TUNING),
        ("vrrp_rt_priority", PROCESS_TUNING),
        ("checker_rt_priority", PROCESS_TUNING),
        ("vrrp_skip_check_adv_addr", "haldir never drops an advert for its address list (RFC 5798 §7.1 only says MAY log), which is what this asks for"),
        ("enable_traps", "haldir has no SNMP agent"),
        ("enable_snmp_vrrp", "haldir has no SNMP agent"),
        ("enable_snmp_checker", "haldir has no SNMP agent"),
        ("enable_snmp_rfc", "haldir has no SNMP agent"),
        ("enable_dbus", "haldir has no D-Bus interface"),
    ],
};

const INSTANCE: BlockKeywords = BlockKeywords {
    place: "vrrp_instance",
    accepted: &[
        "state",
        "interface",
        "virtual_router_id",
        "priority",
        "advert_int",
        "version",
        "virtual_ipaddress",
        "virtual_ipaddress_excluded",
        "virtual_routes",
        "virtual_rules",
        "use_vmac",
        "vmac_xmit_base",
        "nopreempt",
        "preempt_delay",
        "accept",
        "no_accept",
        "unicast_src_ip",
        "unicast_peer",
        "garp_master_delay",
        "garp_master_repeat",
        "garp_master_refresh",
        "garp_master_refresh_repeat",
        "garp_interval",
        "authentication",
        "auth_hmac",
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "track_interface",
        "track_script",
        "track_file",
        "track_process",
        "mcast_src_ip",
        "lvs_sync_daemon_interface",
    ],
    planned: &[
        ("dont_track_primary", "haldir always tracks the instance's interface"),
        ("use_vmac_addr", "macvlans for the addresses on other interfaces are not implemented; use_vmac covers the instance's interface"),
        ("use_ipvlan", "ipvlan interfaces are not implemented"),
        ("notify_master_rx_lower_pri", "not implemented"),
        ("garp_lower_prio_delay", "haldir has no special gratuitous ARP on a lower-priority advert"),
        ("garp_lower_prio_repeat", "haldir has no special gratuitous ARP on a lower-priority advert"),
        ("native_ipv6", "not implemented"),
        ("strict_mode", "per-instance strict mode is not implemented; use vrrp_strict in global_defs"),
    ],
    ignored: &[
        ("smtp_alert", MAIL_ALERTS),
        ("debug", "haldir's log level is set on its command line"),
        ("skip_check_adv_addr", "haldir never drops an advert for its address list (RFC 5798 §7.1 only says MAY log), which is what this asks for"),
    ],
};

const SYNC_GROUP: BlockKeywords = BlockKeywords {
    place: "vrrp_sync_group",
    accepted: &[
        "group",
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "sync_group_tracking_weight",
        "global_tracking",
    ],
    planned: &[],
    ignored: &[("smtp_alert", MAIL_ALERTS)],
};

const AUTHENTICATION: BlockKeywords = BlockKeywords {
    place: "authentication",
    accepted: &["auth_type", "auth_pass"],
    planned: &[],
    ignored: &[],
};

const AUTH_HMAC: BlockKeywords = BlockKeywords {
    place: "auth_hmac",
    accepted: &["key", "active_key", "mode", "anti_replay", "time_window"],
    planned: &[],
    ignored: &[],
};

const VIRTUAL_SERVER: BlockKeywords = BlockKeywords {
    place: "virtual_server",
    accepted: virtual_server_keywords!(;
        // Scheduler flags, keepalived.conf(5): TOML has `scheduler_flags = [...]`.
        "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback"),
    planned: &[
        ("lvs_timeouts", "setting IPVS timeouts is not implemented"),
        ("ha_suspend", "not implemented"),
        ("one_packet_scheduling", "not implemented"),
        ("lb_flags", "scheduler flags are not implemented"),
    ],
    ignored: &[("smtp_alert", MAIL_ALERTS)],
};

const REAL_SERVER: BlockKeywords = BlockKeywords {
    place: "real_server",
    accepted: real_server_keywords!(;),
    planned: &[
        ("BFD_CHECK", "the BFD checker is not implemented"),
        ("FILE_CHECK", "the FILE checker is not implemented"),
    ],
    ignored: &[("smtp_alert", MAIL_ALERTS)],
};

/// Walks the statements, collecting errors and warnings.
#[derive(Default)]
struct Front {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// (file, keyword) pairs already warned about.
    warned: std::collections::HashSet<(String, String)>,
    /// global_defs settings that are defaults for every instance.
    instance_defaults: InstanceDefaults,
    /// `virtual_server group NAME { ... }` blocks, expanded once every
    /// `virtual_server_group` of the file is known (keepalived allows either order).
    group_servers: Vec<(Located<String>, VirtualServerDraft)>,
    /// The first `lvs_sync_daemon_interface IF` inside a vrrp_instance:
    /// keepalived's old syntax for `lvs_sync_daemon IF THAT_INSTANCE`.
    old_sync_daemon: Option<crate::lvs_sync::LvsSyncDraft>,
}

/// One member of a `virtual_server_group`: keepalived.conf(5) allows
/// `IP PORT`, `IP-LAST PORT` (a range of the last IPv4 octet or IPv6 group)
/// and `fwmark N`.
#[derive(Clone)]
enum GroupMember {
    Address(Located<String>, Option<Located<i64>>),
    Fwmark(Option<Located<i64>>),
}

/// global_defs keywords that give instances a default (keepalived's
/// `default_interface`, `vrrp_strict`, `vrrp_garp_*`).
#[derive(Default)]
struct InstanceDefaults {
    interface: Option<Located<String>>,
    /// `vrrp_strict`: keepalived's strict mode makes `no_accept` the default.
    strict: Option<Loc>,
    garp_master_delay: Option<Located<f64>>,
    garp_master_repeat: Option<Located<i64>>,
    garp_master_refresh: Option<Located<f64>>,
    garp_master_refresh_repeat: Option<Located<i64>>,
    garp_interval: Option<Located<f64>>,
}

/// Where each keyword was first set in one block, for duplicate errors. A block sets a
/// handful of keywords, so a list searched in order does it without the hash map's
/// allocation and hashing, and the first four are held inline: at 10,000 virtual
/// servers × 4 real servers with checkers there is one per block, 90,000 of them in a
/// parse, each an allocation when it was a list of its own.
#[derive(Default)]
struct Seen(smallvec::SmallVec<[(&'static str, Loc); 4]>);

impl Seen {
    fn new() -> Seen {
        Seen::default()
    }

    fn get(&self, key: &str) -> Option<&Loc> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, loc)| loc)
    }

    fn insert(&mut self, key: &'static str, loc: Loc) {
        self.0.push((key, loc));
    }
}

/// The document being read, between top-level statements.
struct Document {
    draft: Draft,
    /// global_defs may be split over several blocks, as in keepalived.
    globals: Seen,
    groups: HashMap<String, Vec<GroupMember>>,
}

impl Document {
    fn new(file: FileName) -> Document {
        Document {
            draft: Draft::new(file),
            globals: Seen::new(),
            groups: HashMap::new(),
        }
    }
}

impl Front {
    fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        self.errors.push(ConfigError::at(loc, message));
    }

    /// A warning about `keyword` at `loc`, unless one was given for it in
    /// this file already.
    fn warn_once(&mut self, keyword: &str, loc: &Loc, message: impl Into<String>) {
        if self
            .warned
            .insert((loc.file.to_string(), keyword.to_owned()))
        {
            self.warnings.push(ConfigError::at(loc, message));
        }
    }

    /// One top-level statement of the document, in order. It is taken by value and
    /// dropped once read, so its memory is reused for the next statement and the drafts.
    fn top_statement(&mut self, document: &mut Document, stmt: Stmt) {
        let Document {
            draft,
            globals,
            groups,
        } = document;
        let stmt = &stmt;
        match self.keyword(stmt, &TOP) {
            Some("global_defs") if self.no_args(stmt) => {
                if let Some(block) = self.block(stmt) {
                    self.global_defs(block, globals, draft);
                }
            }
            Some("global_defs") => {}
            Some("vrrp_instance") => draft.instances.push(self.instance(stmt)),
            Some("vrrp_sync_group") => draft.sync_groups.push(self.sync_group(stmt)),
            Some("vrrp_script") => draft.vrrp_scripts.push(self.vrrp_script(stmt)),
            // `vrrp_track_file` is keepalived's older name of the same block.
            Some("track_file" | "vrrp_track_file") => {
                draft.track_files.push(self.track_file(stmt))
            }
            // `vrrp_track_process` is the name keepalived.conf(5) documents.
            Some("track_process" | "vrrp_track_process") => {
                draft.track_processes.push(self.track_process(stmt))
            }
            Some("virtual_server_group") => self.virtual_server_group(stmt, groups),
            // keepalived allows these blocks more than once; their entries add up.
            Some(key @ ("static_ipaddress" | "static_routes" | "static_rules")) => {
                if let Some(lines) = self.entry_lines(stmt) {
                    let list = match key {
                        "static_ipaddress" => &mut draft.static_ipaddress,
                        "static_routes" => &mut draft.static_routes,
                        _ => &mut draft.static_rules,
                    };
                    match list {
                        Some(list) => list.value.extend(lines.value),
                        None => *list = Some(lines),
                    }
                }
            }
            Some("virtual_server") => {
                if let Some(vs) = self.virtual_server(stmt) {
                    let slot = crate::validate_ipvs::validate_early(&mut self.errors, vs);
                    draft.virtual_servers.push(slot);
                }
            }
            // `include` lines are spliced in by the reader; a bare
            // `include` with a block or no argument lands here.
            Some(_) => self.error(
                &stmt.keyword().loc,
                "include takes exactly one file name or pattern on its own line, e.g. `include /etc/keepalived/conf.d/*.conf`",
            ),
            None => {}
        }
    }

    /// The draft once every top-level statement was read: what needs all of them.
    fn finish_document(&mut self, document: Document) -> Draft {
        let Document {
            mut draft, groups, ..
        } = document;
        for instance in &mut draft.instances {
            self.apply_defaults(instance);
        }
        self.expand_groups(&groups, &mut draft);
        self.sync_group_tracking(&mut draft);
        // keepalived (vrrp_parser.c): the old instance keyword is ignored once
        // a sync daemon interface is set; global_defs' `lvs_sync_daemon` wins.
        if let Some(old) = self.old_sync_daemon.take() {
            if draft.lvs_sync_daemon.is_some() {
                self.warnings.push(ConfigError::at(
                    &old.loc,
                    "`lvs_sync_daemon_interface` is ignored: global_defs sets lvs_sync_daemon",
                ));
            } else {
                draft.lvs_sync_daemon = Some(old);
            }
        }
        draft
    }

    /// `lvs_sync_daemon_interface IF` in a vrrp_instance: keepalived's
    /// deprecated form of `lvs_sync_daemon IF INSTANCE` naming this instance;
    /// as keepalived, the first one counts, a later one is ignored with a warning.
    fn old_sync_daemon_interface(&mut self, stmt: &Stmt, instance: &InstanceDraft) {
        let Some(interface) = self.word(stmt) else {
            return;
        };
        let loc = stmt.keyword().loc;
        if let Some(first) = &self.old_sync_daemon {
            let message = format!(
                "`lvs_sync_daemon_interface` is ignored: {}:{} already set it (keepalived keeps the first)",
                first.loc.line, first.loc.col
            );
            self.warnings.push(ConfigError::at(&loc, message));
            return;
        }
        let name = instance
            .name
            .as_ref()
            .map_or("INSTANCE", |n| n.value.as_str());
        let message = format!(
            "`lvs_sync_daemon_interface` in a vrrp_instance is deprecated (keepalived too); read as `lvs_sync_daemon {} {name}` in global_defs",
            interface.value
        );
        self.warnings.push(ConfigError::at(&loc, message));
        let mut sync = crate::lvs_sync::LvsSyncDraft::new(loc);
        sync.interface = Some(interface);
        sync.instance = instance.name.clone();
        self.old_sync_daemon = Some(sync);
    }

    /// `virtual_server_group NAME { IP PORT | IP-LAST PORT | fwmark N ... }`.
    fn virtual_server_group(
        &mut self,
        stmt: &Stmt,
        groups: &mut HashMap<String, Vec<GroupMember>>,
    ) {
        let [name] = stmt.args() else {
            self.error(
                &stmt.keyword().loc,
                format!("`{}`: write `virtual_server_group NAME {{`", stmt.text()),
            );
            return;
        };
        if groups.contains_key(name.text.as_str()) {
            let message = format!("virtual_server_group `{}` is defined twice", name.text);
            self.error(&name.loc, message);
            return;
        }
        let Some(block) = self.block(stmt) else {
            return;
        };
        let mut members = Vec::new();
        for entry in &block.items {
            if entry.block.is_some() {
                let message = format!(
                    "virtual_server_group entry `{}`: takes no block",
                    entry.text()
                );
                self.error(&entry.keyword().loc, message);
                continue;
            }
            let words: Vec<&Word> = std::iter::once(entry.keyword())
                .chain(entry.args())
                .collect();
            match words.as_slice() {
                [fwmark, mark] if fwmark.text == "fwmark" => {
                    members.push(GroupMember::Fwmark(self.integer_word(entry, mark)));
                }
                [address, port] => match expand_range(&address.text) {
                    Ok(addresses) => {
                        let port = self.integer_word(entry, port);
                        for one in addresses {
                            members.push(GroupMember::Address(
                                Located {
                                    value: one,
                                    loc: address.loc,
                                },
                                port.clone(),
                            ));
                        }
                    }
                    Err(why) => {
                        let message =
                            format!("virtual_server_group entry `{}`: {why}", entry.text());
                        self.error(&address.loc, message);
                    }
                },
                _ => {
                    let message = format!(
                        "virtual_server_group entry `{}`: write `ADDRESS PORT`, `ADDRESS-LAST PORT` (e.g. `10.0.0.1-5 80`) or `fwmark N`",
                        entry.text()
                    );
                    self.error(&entry.keyword().loc, message);
                }
            }
        }
        groups.insert(name.text.as_str().to_owned(), members);
    }

    /// keepalived.conf(5): a `virtual_server group NAME` applies its settings
    /// and real servers to every member of the group; haldir makes one
    /// virtual server per member, which is what IPVS holds too.
    fn expand_groups(&mut self, groups: &HashMap<String, Vec<GroupMember>>, draft: &mut Draft) {
        for (name, template) in std::mem::take(&mut self.group_servers) {
            let Some(members) = groups.get(&name.value) else {
                let message = format!(
                    "virtual_server group `{}`: no virtual_server_group of that name",
                    name.value
                );
                self.error(&name.loc, message);
                continue;
            };
            for member in members {
                let mut d = template.clone();
                match member {
                    GroupMember::Address(ip, port) => {
                        d.present.extend(["ip", "port"]);
                        d.ip = Some(ip.clone());
                        d.port = port.clone();
                    }
                    GroupMember::Fwmark(mark) => {
                        d.present.push("fwmark");
                        d.fwmark = mark.clone();
                    }
                }
                draft
                    .virtual_servers
                    .push(VirtualServerSlot::Draft(Box::new(d)));
            }
        }
    }

    /// Fills what an instance leaves unset from global_defs and keepalived's
    /// own defaults.
    fn apply_defaults(&mut self, d: &mut InstanceDraft) {
        let defaults = &self.instance_defaults;
        if d.interface.is_none() && !d.present.contains(&"interface") {
            if let Some(interface) = &defaults.interface {
                d.interface = Some(interface.clone());
                d.present.push("interface");
            }
        }
        if d.accept.is_none() && !d.present.contains(&"accept") {
            if let Some(strict) = &defaults.strict {
                d.accept = Some(Located {
                    value: false,
                    loc: *strict,
                });
            }
        }
        if d.garp_master_delay.is_none() {
            d.garp_master_delay = defaults.garp_master_delay.clone();
        }
        if d.garp_master_repeat.is_none() {
            d.garp_master_repeat = defaults.garp_master_repeat.clone();
        }
        if d.garp_master_refresh.is_none() {
            d.garp_master_refresh = defaults.garp_master_refresh.clone();
        }
        if d.garp_master_refresh_repeat.is_none() {
            d.garp_master_refresh_repeat = defaults.garp_master_refresh_repeat.clone();
        }
        if d.garp_interval.is_none() {
            d.garp_interval = defaults.garp_interval.clone();
        }
        // keepalived's default priority is 100 (vrrp_data.c); it warns only
        // under strict mode.
        if !d.present.contains(&"priority") {
            d.priority = Some(Located {
                value: 100,
                loc: d.loc,
            });
            d.present.push("priority");
        }
    }

    fn global_defs(&mut self, block: &Block, seen: &mut Seen, draft: &mut Draft) {
        for stmt in &block.items {
            let Some(keyword) = self.keyword(stmt, &GLOBAL_DEFS) else {
                continue;
            };
            if !self.first(seen, keyword, stmt) {
                continue;
            }
            match keyword {
                "router_id" => draft.router_id = self.word(stmt),
                "dynamic_interfaces" => draft.dynamic_interfaces = self.dynamic_interfaces(stmt),
                "lvs_timeouts" => draft.lvs_timeouts = self.words(stmt),
                "fifo_write_vrrp_states_on_reload" => {
                    draft.notify_fifos.write_states_on_reload = self.flag(stmt, true)
                }
                fifo if crate::notify_fifo::fifo_keyword(fifo).is_some() => {
                    let (events, script) = crate::notify_fifo::fifo_keyword(fifo).expect("matched");
                    let value = self.fifo_words(stmt);
                    if script {
                        *draft.notify_fifos.script_mut(events) = value;
                    } else {
                        *draft.notify_fifos.fifo_mut(events) = value;
                    }
                }
                "vrrp_version" => draft.default_version = self.integer(stmt),
                "script_user" => draft.scripts.script_user = self.script_user(stmt),
                "notify_timeout" => draft.scripts.notify_timeout = self.seconds(stmt),
                "enable_script_security" => {
                    draft.scripts.enable_script_security = self.flag(stmt, true)
                }
                "lvs_sync_daemon" => draft.lvs_sync_daemon = self.lvs_sync_daemon(stmt),
                "default_interface" => self.instance_defaults.interface = self.word(stmt),
                "vrrp_strict" => {
                    if self.flag(stmt, true).is_some() {
                        self.instance_defaults.strict = Some(stmt.keyword().loc);
                    }
                }
                "vrrp_garp_master_delay" => {
                    self.instance_defaults.garp_master_delay = self.seconds(stmt)
                }
                "vrrp_garp_master_repeat" => {
                    self.instance_defaults.garp_master_repeat = self.integer(stmt)
                }
                "vrrp_garp_master_refresh" => {
                    self.instance_defaults.garp_master_refresh = self.seconds(stmt)
                }
                "vrrp_garp_master_refresh_repeat" => {
                    self.instance_defaults.garp_master_refresh_repeat = self.integer(stmt)
                }
                // haldir spaces gratuitous ARPs and unsolicited NAs alike.
                "vrrp_garp_interval" | "vrrp_gna_interval" => {
                    let value = self.seconds(stmt);
                    if let (Some(new), Some(old)) = (&value, &self.instance_defaults.garp_interval)
                    {
                        if new.value != old.value {
                            let message = format!(
                                "`{}`: haldir has one interval for gratuitous ARPs and unsolicited NAs, and {} sets another; give both the same value",
                                stmt.text(),
                                old.loc
                            );
                            self.error(&stmt.keyword().loc, message);
                            continue;
                        }
                    }
                    self.instance_defaults.garp_interval = value;
                }
                other => unreachable!("GLOBAL_DEFS keyword {other} has no reader"),
            }
        }
    }

    /// `notify_fifo PATH [USER [GROUP]]` or `notify_fifo_script COMMAND [USER [[:]GROUP]]`
    /// (keepalived writes the script's command line as one word or one quoted string).
    fn fifo_words(&mut self, stmt: &Stmt) -> Option<crate::notify_fifo::FifoDraft> {
        if let Some(block) = &stmt.block {
            let message = format!("`{}` takes values, not a block", stmt.keyword().text);
            self.error(&block.open, message);
            return None;
        }
        let keyword = &stmt.keyword().text;
        match stmt.args() {
            [] => {
                let message = format!(
                    "`{keyword}` needs a path or command, optionally a user and group: `{keyword} /run/haldir/notify.fifo`"
                );
                self.error(&stmt.keyword().loc, message);
                None
            }
            [_, _, _, extra, ..] => {
                let message = format!(
                    "`{}`: {keyword} takes one path or command, then USER [GROUP]; remove `{}` (quote a command line with spaces)",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
            [value, rest @ ..] => Some(crate::notify_fifo::FifoDraft {
                value: located(value),
                user: rest.first().map(located),
                group: rest.get(1).map(|g| Located {
                    value: g.text.strip_prefix(':').unwrap_or(&g.text).to_owned(),
                    loc: g.loc,
                }),
            }),
        }
    }

    /// `lvs_sync_daemon IF [INSTANCE] [SYNCID] [inst NAME] [id N] [maxlen N] [port N]
    /// [ttl N] [group ADDR]`, as keepalived's `lvs_syncd_handler` reads it: the
    /// instance may be the second word or follow `inst`; a bare number after
    /// the instance is the old spelling of `id`.
    fn lvs_sync_daemon(&mut self, stmt: &Stmt) -> Option<crate::lvs_sync::LvsSyncDraft> {
        let mut d = crate::lvs_sync::LvsSyncDraft::new(stmt.keyword().loc);
        let args = stmt.args();
        let Some(interface) = args.first() else {
            self.error(
                &stmt.keyword().loc,
                "lvs_sync_daemon needs an interface: `lvs_sync_daemon eth1 VI_1 id 0`",
            );
            return None;
        };
        d.interface = Some(located(interface));
        let mut i = 1;
        while i < args.len() {
            let word = &args[i];
            let option = word.text.as_str();
            if matches!(
                option,
                "inst" | "id" | "maxlen" | "port" | "ttl" | "group" | "bulk_resync"
            ) {
                let Some(value) = args.get(i + 1) else {
                    let message = format!("`{}`: `{option}` needs a value", stmt.text());
                    self.error(&word.loc, message);
                    break;
                };
                match option {
                    "inst" if d.instance.is_some() => {
                        let message =
                            format!("`{}`: the instance is given twice; keep one", stmt.text());
                        self.error(&word.loc, message);
                    }
                    "inst" => d.instance = Some(located(value)),
                    "id" => d.id = self.integer_word(stmt, value),
                    "maxlen" => d.maxlen = self.integer_word(stmt, value),
                    "port" => d.port = self.integer_word(stmt, value),
                    "ttl" => d.ttl = self.integer_word(stmt, value),
                    // haldir extension (keepalived has no bulk resync): on | off.
                    "bulk_resync" => match value.text.as_str() {
                        "on" | "true" | "yes" => d.bulk_resync = Some(located_bool(value, true)),
                        "off" | "false" | "no" => d.bulk_resync = Some(located_bool(value, false)),
                        other => {
                            let message =
                                format!("`{}`: bulk_resync `{other}`: use on or off", stmt.text());
                            self.error(&value.loc, message);
                        }
                    },
                    _ => d.group = Some(located(value)),
                }
                i += 2;
                continue;
            }
            if i == 1 {
                d.instance = Some(located(word));
            } else if i == 2 && word.text.bytes().all(|b| b.is_ascii_digit()) {
                d.id = self.integer_word(stmt, word);
            } else {
                let message = format!(
                    "`{}`: unknown lvs_sync_daemon option `{}`; accepted: inst, id, maxlen, port, ttl, group, bulk_resync",
                    stmt.text(),
                    word.text
                );
                self.error(&word.loc, message);
            }
            i += 1;
        }
        Some(d)
    }

    fn instance(&mut self, stmt: &Stmt) -> InstanceDraft {
        let mut d = InstanceDraft::new(stmt.keyword().loc);
        // The name is the block's argument; reported here if absent, so it
        // always counts as present.
        d.present.push("name");
        match stmt.args() {
            [name] => d.name = Some(located(name)),
            [] => self.error(
                &stmt.keyword().loc,
                "vrrp_instance needs a name: `vrrp_instance VI_1 {`",
            ),
            [_, extra, ..] => self.error(
                &extra.loc,
                format!(
                    "`{}`: vrrp_instance takes one name; remove `{}`",
                    stmt.text(),
                    extra.text
                ),
            ),
        }
        let Some(block) = self.block(stmt) else {
            return d;
        };
        let mut state_master: Option<Loc> = None;
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &INSTANCE) else {
                continue;
            };
            // `accept` and `no_accept` set the same thing, as do
            // `unicast_src_ip` and `mcast_src_ip` (keepalived's one source address).
            let key = match keyword {
                "no_accept" => "accept",
                "mcast_src_ip" => "unicast_src_ip",
                other => other,
            };
            if !self.first(&mut seen, key, s) {
                continue;
            }
            if key != "state" {
                d.present.push(key);
            }
            match keyword {
                "state" => state_master = self.state(s),
                "interface" => d.interface = self.word(s),
                "lvs_sync_daemon_interface" => self.old_sync_daemon_interface(s, &d),
                "virtual_router_id" => d.virtual_router_id = self.integer(s),
                "priority" => d.priority = self.integer(s),
                "advert_int" => d.advert_int = self.seconds(s),
                "version" => d.version = self.integer(s),
                "virtual_ipaddress" => d.virtual_ipaddress = self.entry_lines(s),
                "virtual_ipaddress_excluded" => d.virtual_ipaddress_excluded = self.entry_lines(s),
                "virtual_routes" => d.virtual_routes = self.entry_lines(s),
                "virtual_rules" => d.virtual_rules = self.entry_lines(s),
                "use_vmac" => d.use_vmac = self.words(s),
                "vmac_xmit_base" => d.vmac_xmit_base = self.flag(s, true),
                // keepalived reads `nopreempt` alone; sites write `nopreempt 1`
                // too, which keepalived takes as nopreempt (it ignores the word).
                "nopreempt" if !s.args().is_empty() && s.block.is_none() => {
                    let message = format!(
                        "`{}`: nopreempt takes no value; haldir reads it as `nopreempt`, as keepalived does",
                        s.text()
                    );
                    self.warn_once("nopreempt value", &s.keyword().loc, message);
                    d.nopreempt = Some(Located {
                        value: true,
                        loc: s.keyword().loc,
                    });
                }
                "nopreempt" => d.nopreempt = self.flag(s, true),
                "preempt_delay" => d.preempt_delay = self.seconds(s),
                "accept" => d.accept = self.flag(s, true),
                "no_accept" => d.accept = self.flag(s, false),
                "unicast_src_ip" | "mcast_src_ip" => d.unicast_src_ip = self.word(s),
                "unicast_peer" => d.unicast_peer = self.list_block(s, "ADDRESS"),
                "garp_master_delay" => d.garp_master_delay = self.seconds(s),
                "garp_master_repeat" => d.garp_master_repeat = self.integer(s),
                "garp_master_refresh" => d.garp_master_refresh = self.seconds(s),
                "garp_master_refresh_repeat" => d.garp_master_refresh_repeat = self.integer(s),
                "garp_interval" => d.garp_interval = self.seconds(s),
                "authentication" => d.authentication = self.authentication(s),
                "auth_hmac" => d.auth_hmac = self.auth_hmac(s),
                "notify_master" => d.notify.master = self.command(s),
                "notify_backup" => d.notify.backup = self.command(s),
                "notify_fault" => d.notify.fault = self.command(s),
                "notify_stop" => d.notify.stop = self.command(s),
                "notify" => d.notify.notify = self.command(s),
                "track_interface" => d.track_interface = self.track_entries(s),
                "track_script" => d.track_script = self.track_script(s),
                "track_file" => d.track_file = self.track_entries(s),
                "track_process" => d.track_process = self.track_entries(s),
                other => unreachable!("INSTANCE keyword {other} has no reader"),
            }
        }
        if let Some(master) = state_master {
            self.state_master(&mut d, &master);
        }
        d
    }

    /// `virtual_ipaddress { ADDRESS[/PREFIX] [dev IF] [label L] ... }`,
    /// `virtual_ipaddress_excluded`, `virtual_routes` and `virtual_rules`:
    /// each line is one entry, handed on as written (words joined by a space)
    /// and parsed by the validation, which both syntaxes share
    /// (`crate::virtual_ip`, `crate::virtual_route`).
    fn entry_lines(&mut self, stmt: &Stmt) -> Option<Located<Vec<Located<String>>>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let keyword = &stmt.keyword().text;
        let errors_before = self.errors.len();
        let mut values = Vec::with_capacity(block.items.len());
        for entry in &block.items {
            if let Some(inner) = &entry.block {
                let message = format!("{keyword} entry `{}`: takes no block", entry.text());
                self.error(&inner.open, message);
                continue;
            }
            let words: Vec<&str> = entry.words.iter().map(|w| w.text.as_str()).collect();
            values.push(Located {
                value: words.join(" "),
                loc: entry.keyword().loc,
            });
        }
        (self.errors.len() == errors_before).then(|| Located {
            value: values,
            loc: stmt.keyword().loc,
        })
    }

    /// keepalived (vrrp.c, completing an instance) clears `nopreempt` and
    /// `preempt_delay` when the initial state is MASTER, with a warning:
    /// a router that starts as master preempts. haldir does the same.
    fn state_master(&mut self, d: &mut InstanceDraft, master: &Loc) {
        for (keyword, set) in [
            ("nopreempt", d.nopreempt.take().map(|n| n.loc)),
            ("preempt_delay", d.preempt_delay.take().map(|p| p.loc)),
        ] {
            if let Some(at) = set {
                d.present.retain(|k| *k != keyword);
                self.warnings.push(ConfigError::at(
                    &at,
                    format!(
                        "`{keyword}` is cleared by `state MASTER` at {master}, as keepalived does: an instance that starts as master preempts; remove `{keyword}` or write `state BACKUP`"
                    ),
                ));
            }
        }
    }

    /// `vrrp_sync_group NAME { group { VI_1 VI_2 } notify_master ... }`.
    fn sync_group(&mut self, stmt: &Stmt) -> SyncGroupDraft {
        let mut d = SyncGroupDraft::new(stmt.keyword().loc);
        d.present.push("name");
        match stmt.args() {
            [name] => d.name = Some(located(name)),
            [] => self.error(
                &stmt.keyword().loc,
                "vrrp_sync_group needs a name: `vrrp_sync_group VG_1 {`",
            ),
            [_, extra, ..] => self.error(
                &extra.loc,
                format!(
                    "`{}`: vrrp_sync_group takes one name; remove `{}`",
                    stmt.text(),
                    extra.text
                ),
            ),
        }
        let Some(block) = self.block(stmt) else {
            return d;
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &SYNC_GROUP) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "group" => d.group = self.group_members(s),
                "notify_master" => d.notify.master = self.command(s),
                "notify_backup" => d.notify.backup = self.command(s),
                "notify_fault" => d.notify.fault = self.command(s),
                "notify_stop" => d.notify.stop = self.command(s),
                "notify" => d.notify.notify = self.command(s),
                // keepalived: `global_tracking` is the deprecated name of the same flag.
                "sync_group_tracking_weight" | "global_tracking" => {
                    d.tracking_weight = self.flag(s, true).is_some()
                }
                other => unreachable!("SYNC_GROUP keyword {other} has no reader"),
            }
        }
        d
    }

    /// keepalived's rule for the members of a sync group without
    /// `sync_group_tracking_weight` (vrrp.c, `vrrp_complete_instance`): a group moves as
    /// one, so no member's priority may float. A weighted `track_interface` entry gets
    /// weight 0 (down is FAULT); a weighted `track_script` or `track_process` is dropped;
    /// a `track_file` of the default weight 1 gets weight 0, one of another weight is
    /// dropped. Each with a warning, as keepalived logs one. (haldir's TOML applies the
    /// weights it is given: `haldir convert` writes what this leaves.)
    fn sync_group_tracking(&mut self, draft: &mut Draft) {
        let members: Vec<String> = draft
            .sync_groups
            .iter()
            .filter(|g| !g.tracking_weight)
            .filter_map(|g| g.group.as_ref())
            .flat_map(|names| names.value.iter().map(|n| n.value.clone()))
            .collect();
        let block_weight = |blocks: Vec<(Option<&str>, Option<i64>)>, name: &str, default: i64| {
            blocks
                .iter()
                .find(|(n, _)| *n == Some(name))
                .map_or(default, |(_, w)| w.unwrap_or(default))
        };
        let scripts: Vec<(Option<&str>, Option<i64>)> = draft
            .vrrp_scripts
            .iter()
            .map(|s| {
                (
                    s.name.as_ref().map(|n| n.value.as_str()),
                    s.weight.as_ref().map(|w| w.value),
                )
            })
            .collect();
        let files: Vec<(Option<&str>, Option<i64>)> = draft
            .track_files
            .iter()
            .map(|f| {
                (
                    f.name.as_ref().map(|n| n.value.as_str()),
                    f.weight.as_ref().map(|w| w.value),
                )
            })
            .collect();
        let processes: Vec<(Option<&str>, Option<i64>)> = draft
            .track_processes
            .iter()
            .map(|p| {
                (
                    p.name.as_ref().map(|n| n.value.as_str()),
                    p.weight.as_ref().map(|w| w.value),
                )
            })
            .collect();
        let mut warnings = Vec::new();
        for instance in draft
            .instances
            .iter_mut()
            .filter(|i| i.name.as_ref().is_some_and(|n| members.contains(&n.value)))
        {
            let name = instance
                .name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_default();
            let why = format!(
                "as keepalived does, because {name} is in a vrrp_sync_group without `sync_group_tracking_weight` (add it to the group to keep the weight)"
            );
            if let Some(list) = &mut instance.track_interface {
                for entry in &mut list.value {
                    // An out-of-range weight is left for validation to report.
                    if let Some(w) = entry
                        .weight
                        .as_mut()
                        .filter(|w| w.value != 0 && (-253..=253).contains(&w.value))
                    {
                        warnings.push(ConfigError::at(
                            &w.loc,
                            format!("track_interface weight {} is taken as 0 (the interface down puts the group in FAULT), {why}", w.value),
                        ));
                        w.value = 0;
                    }
                }
            }
            if let Some(list) = &mut instance.track_script {
                list.value.retain(|entry| {
                    let Some(script) = entry.name.as_ref() else {
                        return true;
                    };
                    let weight = entry.weight.as_ref().map_or_else(
                        || block_weight(scripts.clone(), &script.value, 0),
                        |w| w.value,
                    );
                    if weight != 0 {
                        warnings.push(ConfigError::at(
                            &entry.loc,
                            format!(
                                "track_script {} (weight {weight}) is ignored, {why}",
                                script.value
                            ),
                        ));
                    }
                    weight == 0
                });
            }
            if let Some(list) = &mut instance.track_file {
                list.value.retain_mut(|entry| {
                    let Some(file) = entry.name.as_ref() else {
                        return true;
                    };
                    let weight = entry
                        .weight
                        .as_ref()
                        .map_or_else(|| block_weight(files.clone(), &file.value, 1), |w| w.value);
                    match weight {
                        0 => true,
                        // Out of range: left for validation to report.
                        w if !(-254..=254).contains(&w) => true,
                        1 => {
                            warnings.push(ConfigError::at(
                                &entry.loc,
                                format!("track_file {} is taken with weight 0 (a non-zero value puts the group in FAULT), {why}", file.value),
                            ));
                            entry.weight = Some(Located {
                                value: 0,
                                loc: entry.loc,
                            });
                            true
                        }
                        _ => {
                            warnings.push(ConfigError::at(
                                &entry.loc,
                                format!("track_file {} (weight {weight}) is ignored, {why}", file.value),
                            ));
                            false
                        }
                    }
                });
            }
            if let Some(list) = &mut instance.track_process {
                list.value.retain(|entry| {
                    let Some(process) = entry.name.as_ref() else {
                        return true;
                    };
                    let weight = entry.weight.as_ref().map_or_else(
                        || block_weight(processes.clone(), &process.value, 0),
                        |w| w.value,
                    );
                    if weight != 0 {
                        warnings.push(ConfigError::at(
                            &entry.loc,
                            format!(
                                "track_process {} (weight {weight}) is ignored, {why}",
                                process.value
                            ),
                        ));
                    }
                    weight == 0
                });
            }
        }
        self.warnings.extend(warnings);
    }

    /// `group { VI_1 VI_2 }`: instance names, one or several per line.
    fn group_members(&mut self, stmt: &Stmt) -> Option<Located<Vec<Located<String>>>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let errors_before = self.errors.len();
        let mut names = Vec::new();
        for entry in &block.items {
            if let Some(inner) = &entry.block {
                let message = format!("group entry `{}`: takes no block", entry.text());
                self.error(&inner.open, message);
            } else {
                names.extend(entry.words.iter().map(located));
            }
        }
        (self.errors.len() == errors_before).then(|| Located {
            value: names,
            loc: stmt.keyword().loc,
        })
    }

    /// `auth_pass`: keepalived keeps the first 8 bytes of a longer password
    /// (the VRRPv2 field holds 8, RFC 2338 §5.3.10); haldir does the same, with a warning.
    fn auth_pass(&mut self, stmt: &Stmt) -> Option<Located<String>> {
        let mut pass = self.word(stmt)?;
        if pass.value.len() > 8 && pass.value.is_char_boundary(8) {
            let message = format!(
                "auth_pass is {} bytes; only the first 8 are sent (RFC 2338 §5.3.10), as keepalived does; shorten it to {:?}",
                pass.value.len(),
                &pass.value[..8]
            );
            self.warnings.push(ConfigError::at(&pass.loc, message));
            pass.value.truncate(8);
        }
        Some(pass)
    }

    /// `state MASTER|BACKUP`: checked, then not used. haldir always starts an
    /// instance as Backup and lets the election decide (RFC 5798 §6.4.1
    /// with priority < 255), which is where keepalived's MASTER ends up too
    /// once the adverts flow; the model has no initial state.
    /// `state MASTER|BACKUP`: where `state MASTER` is written, if it is.
    fn state(&mut self, stmt: &Stmt) -> Option<Loc> {
        let value = self.one_arg(stmt)?;
        match value.text.as_str() {
            "MASTER" => Some(value.loc),
            "BACKUP" => None,
            _ => {
                let message = format!("`{}`: state must be MASTER or BACKUP", stmt.text());
                self.error(&value.loc, message);
                None
            }
        }
    }

    /// `auth_hmac { key ID VALUE ... active_key ID mode M anti_replay A
    /// time_window N }`; `key` may repeat, the others are set once.
    fn auth_hmac(&mut self, stmt: &Stmt) -> Option<Located<crate::auth_hmac::AuthHmacDraft>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let mut auth = crate::auth_hmac::AuthHmacDraft::default();
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &AUTH_HMAC) else {
                continue;
            };
            if keyword != "key" && !self.first(&mut seen, keyword, s) {
                continue;
            }
            match keyword {
                "key" => {
                    if let Some(block) = &s.block {
                        self.error(&block.open, "`key` takes an id and a value, not a block");
                        continue;
                    }
                    let mut key = crate::auth_hmac::KeyDraft {
                        loc: s.keyword().loc,
                        id: None,
                        value: None,
                    };
                    match s.args() {
                        [id, value] => {
                            key.id = self.integer_word(s, id);
                            key.value = Some(located(value));
                        }
                        [] | [_] => {
                            self.error(
                                &s.keyword().loc,
                                "`key` needs an id and a value: `key 1 hex:<64 hex digits>` or `key 1 file:/etc/haldir/vrrp.key`",
                            );
                            continue;
                        }
                        [_, _, extra, ..] => {
                            let message =
                                format!("`key ID VALUE` takes two values; remove `{}`", extra.text);
                            self.error(&extra.loc, message);
                            continue;
                        }
                    }
                    auth.keys.push(key);
                }
                "active_key" => auth.active_key = self.integer(s),
                "mode" => auth.mode = self.word(s),
                "anti_replay" => auth.anti_replay = self.word(s),
                "time_window" => auth.time_window = self.integer(s),
                other => unreachable!("AUTH_HMAC keyword {other} has no reader"),
            }
        }
        Some(Located {
            value: auth,
            loc: stmt.keyword().loc,
        })
    }

    fn authentication(&mut self, stmt: &Stmt) -> Option<Located<AuthDraft>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let mut auth = AuthDraft::default();
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &AUTHENTICATION) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            auth.present.push(keyword);
            match keyword {
                "auth_type" => auth.auth_type = self.word(s),
                "auth_pass" => auth.auth_pass = self.auth_pass(s),
                other => unreachable!("AUTHENTICATION keyword {other} has no reader"),
            }
        }
        Some(Located {
            value: auth,
            loc: stmt.keyword().loc,
        })
    }

    /// `virtual_server IP PORT { ... }` or `virtual_server fwmark N { ... }`.
    fn virtual_server(&mut self, stmt: &Stmt) -> Option<VirtualServerDraft> {
        let mut d = VirtualServerDraft::new(stmt.keyword().loc);
        let mut group_name = None;
        match stmt.args() {
            [fwmark, mark] if fwmark.text == "fwmark" => {
                d.present.push("fwmark");
                d.fwmark = self.integer_word(stmt, mark);
            }
            [group, name] if group.text == "group" => group_name = Some(located(name)),
            [ip, port] => {
                d.present.extend(["ip", "port"]);
                d.ip = Some(located(ip));
                d.port = self.integer_word(stmt, port);
            }
            [ip] => {
                d.present.extend(["ip", "port"]);
                d.ip = Some(located(ip));
                let message = format!(
                    "`{}`: the port is missing; write `virtual_server {} PORT {{` (or `virtual_server fwmark N {{`)",
                    stmt.text(),
                    ip.text
                );
                self.error(&stmt.keyword().loc, message);
            }
            [] => {
                d.present.push("ip");
                self.error(
                    &stmt.keyword().loc,
                    "virtual_server needs an address and port or a fwmark: `virtual_server 192.0.2.10 80 {` or `virtual_server fwmark 1 {`",
                );
            }
            [_, _, extra, ..] => {
                d.present.push("ip");
                let message = format!(
                    "`{}`: virtual_server takes ADDRESS PORT or fwmark N; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
            }
        }
        let Some(block) = self.block(stmt) else {
            return Some(d);
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &VIRTUAL_SERVER) else {
                continue;
            };
            if keyword != "real_server" {
                if !self.first(&mut seen, health::same_as(keyword), s) {
                    continue;
                }
                d.present.push(keyword);
            }
            match keyword {
                "protocol" => d.protocol = self.word(s),
                "lb_algo" | "lvs_sched" => {
                    if let Some(v) = self.word(s) {
                        d.scheduler.push((keyword, v));
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(v) = self.word(s) {
                        d.method.push((keyword, v));
                    }
                }
                // keepalived.conf(5): `persistence_timeout [<INT>]`, 6 minutes without a value.
                "persistence_timeout" if s.args().is_empty() && s.block.is_none() => {
                    d.persistence_timeout = Some(Located {
                        value: 360.0,
                        loc: s.keyword().loc,
                    })
                }
                "persistence_timeout" => d.persistence_timeout = self.seconds(s),
                "persistence_granularity" => d.extras_mut().persistence_granularity = self.word(s),
                "ops" => d.extras_mut().ops = self.flag(s, true),
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    if let Some(set) = self.flag(s, true) {
                        d.extras_mut().scheduler_flags.push(Located {
                            value: keyword.to_owned(),
                            loc: set.loc,
                        });
                    }
                }
                "delay_loop" => d.delay_loop = self.seconds(s),
                "real_server" => {
                    if let Some(rs) = self.real_server(s) {
                        d.real_servers.push(rs);
                    }
                }
                other => self.virtual_server_health(&mut d, other, s),
            }
        }
        if let Some(name) = group_name {
            self.group_servers.push((name, d));
            return None;
        }
        Some(d)
    }

    /// `real_server IP [PORT] [{ ... }]`.
    fn real_server(&mut self, stmt: &Stmt) -> Option<RealServerDraft> {
        let mut d = RealServerDraft::new(stmt.keyword().loc);
        d.present.push("ip");
        match stmt.args() {
            [] => {
                self.error(
                    &stmt.keyword().loc,
                    "real_server needs an address: `real_server 10.0.0.11 80 {`",
                );
                return None;
            }
            [ip] => d.ip = Some(located(ip)),
            [ip, port] => {
                d.ip = Some(located(ip));
                d.present.push("port");
                d.port = self.integer_word(stmt, port);
            }
            [_, _, extra, ..] => {
                let message = format!(
                    "`{}`: real_server takes ADDRESS [PORT]; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                return None;
            }
        }
        let Some(block) = &stmt.block else {
            return Some(d);
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &REAL_SERVER) else {
                continue;
            };
            // A real server may have several checkers, even of one kind.
            if health::check_kind(keyword).is_none()
                && !self.first(&mut seen, health::same_as(keyword), s)
            {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "weight" => d.weight = self.integer(s),
                "uthreshold" => d.extras_mut().uthreshold = self.integer(s),
                "lthreshold" => d.extras_mut().lthreshold = self.integer(s),
                other => self.real_server_health(&mut d, other, s),
            }
        }
        // The TOML front-end reads the checkers kind by kind (its tables
        // are sorted by key); keep the same order so both give one model.
        d.checks.sort_by_key(|c| c.kind.keyword());
        Some(d)
    }

    // ---- keywords -------------------------------------------------------

    /// The accepted spelling of `stmt`'s keyword, or reports it (planned or
    /// unknown) and returns `None`.
    fn keyword(&mut self, stmt: &Stmt, block: &BlockKeywords) -> Option<&'static str> {
        let word = stmt.keyword();
        let name = word.text.as_str();
        if let Some(&known) = block.accepted.iter().find(|&&k| k == name) {
            return Some(known);
        }
        if let Some((_, why)) = block.ignored.iter().find(|(k, _)| *k == name) {
            let message = format!(
                "`{name}` in {}: accepted but haldir does not act on it ({why}); `haldir check --strict` rejects it",
                block.place
            );
            self.warn_once(name, &word.loc, message);
            return None;
        }
        let message = match block.planned.iter().find(|(k, _)| *k == name) {
            Some((_, why)) => format!(
                "`{name}` in {} is not supported yet: {why}; remove it for now",
                block.place
            ),
            None => {
                let suggestion = block
                    .accepted
                    .iter()
                    .filter(|&&k| edit_distance(k, name) <= 2)
                    .min_by_key(|&&k| edit_distance(k, name))
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                format!(
                    "unknown keyword `{name}` in {}: haldir does not implement it; {suggestion}keywords haldir reads here: {}",
                    block.place,
                    block.accepted.join(", ")
                )
            }
        };
        self.error(&word.loc, message);
        None
    }

    /// Whether `key` is set for the first time in this block (else reported).
    fn first(&mut self, seen: &mut Seen, key: &'static str, stmt: &Stmt) -> bool {
        let word = stmt.keyword();
        if let Some(first) = seen.get(key) {
            let message = format!("`{}` is already set at {first}; keep one", word.text);
            self.error(&word.loc, message);
            return false;
        }
        seen.insert(key, word.loc);
        true
    }

    // ---- values ---------------------------------------------------------

    /// The block of a keyword that needs one.
    fn block<'s>(&mut self, stmt: &'s Stmt) -> Option<&'s Block> {
        if stmt.block.is_none() {
            let message = format!(
                "`{}` needs a block: `{} {{ ... }}`",
                stmt.text(),
                stmt.text()
            );
            self.error(&stmt.keyword().loc, message);
        }
        stmt.block.as_ref()
    }

    /// Reports arguments of a keyword that takes none.
    fn no_args(&mut self, stmt: &Stmt) -> bool {
        match stmt.args().first() {
            Some(extra) => {
                let message = format!(
                    "`{}`: `{}` takes no value here; remove `{}`",
                    stmt.text(),
                    stmt.keyword().text,
                    extra.text
                );
                self.error(&extra.loc, message);
                false
            }
            None => true,
        }
    }

    /// The one argument of a single-value keyword (no block allowed).
    fn one_arg<'s>(&mut self, stmt: &'s Stmt) -> Option<&'s Word> {
        let keyword = &stmt.keyword().text;
        if let Some(block) = &stmt.block {
            let message = format!("`{keyword}` takes a value, not a block");
            self.error(&block.open, message);
            return None;
        }
        match stmt.args() {
            [value] => Some(value),
            [] => {
                let message = format!("`{keyword}` needs a value, e.g. `{}`", example(keyword));
                self.error(&stmt.keyword().loc, message);
                None
            }
            [_, extra, ..] => {
                let message = format!(
                    "`{}`: `{keyword}` takes one value; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
        }
    }

    /// `script_user USER [GROUP]`, as the one string the draft holds.
    fn script_user(&mut self, stmt: &Stmt) -> Option<Located<String>> {
        if let Some(block) = &stmt.block {
            self.error(&block.open, "`script_user` takes a value, not a block");
            return None;
        }
        match stmt.args() {
            [user] => Some(located(user)),
            [user, group] => Some(Located {
                value: format!("{} {}", user.text, group.text),
                loc: user.loc,
            }),
            [] => {
                self.error(
                    &stmt.keyword().loc,
                    "`script_user` needs a user, optionally a group: `script_user keepalived_script` or `script_user nobody nogroup`",
                );
                None
            }
            [_, _, extra, ..] => {
                let message = format!(
                    "`{}`: script_user takes USER [GROUP]; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
        }
    }

    /// A script's command line (`notify_master /etc/x.sh arg` or
    /// `notify_master "/etc/x.sh arg"`): the rest of the line, a quoted word
    /// that holds spaces staying quoted, as keepalived keeps it.
    fn command(&mut self, stmt: &Stmt) -> Option<Located<String>> {
        let keyword = &stmt.keyword().text;
        if let Some(block) = &stmt.block {
            let message = format!("`{keyword}` takes a command line, not a block");
            self.error(&block.open, message);
            return None;
        }
        let Some(first) = stmt.args().first() else {
            let message = format!(
                "`{keyword}` needs the script to run, e.g. `{keyword} /etc/keepalived/{keyword}.sh`"
            );
            self.error(&stmt.keyword().loc, message);
            return None;
        };
        let value = match stmt.args() {
            [only] => only.text.as_str().to_owned(),
            words => {
                let words: Vec<String> = words
                    .iter()
                    .map(|w| {
                        if w.text.is_empty() || w.text.contains(char::is_whitespace) {
                            format!("\"{}\"", w.text)
                        } else {
                            w.text.as_str().to_owned()
                        }
                    })
                    .collect();
                words.join(" ")
            }
        };
        Some(Located {
            value,
            loc: first.loc,
        })
    }

    fn word(&mut self, stmt: &Stmt) -> Option<Located<String>> {
        self.one_arg(stmt).map(located)
    }

    fn integer(&mut self, stmt: &Stmt) -> Option<Located<i64>> {
        let value = self.one_arg(stmt)?;
        self.integer_word(stmt, value)
    }

    /// `value` (a word of `stmt`) as a decimal integer.
    fn integer_word(&mut self, stmt: &Stmt, value: &Word) -> Option<Located<i64>> {
        let text = value.text.as_str();
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        let is_number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<i64>() {
            Ok(n) if is_number => Some(Located {
                value: n,
                loc: value.loc,
            }),
            _ => {
                let why = if is_number {
                    "integer too large"
                } else {
                    "expected an integer"
                };
                let message = format!("`{}`: {why}", stmt.text());
                self.error(&value.loc, message);
                None
            }
        }
    }

    /// A duration in seconds, whole or decimal (`1`, `0.05`), as keepalived reads it.
    fn seconds(&mut self, stmt: &Stmt) -> Option<Located<f64>> {
        let value = self.one_arg(stmt)?;
        let text = value.text.as_str();
        let plain = !text.is_empty()
            && text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
        match text.parse::<f64>() {
            Ok(seconds) if plain && seconds.is_finite() => Some(Located {
                value: seconds,
                loc: value.loc,
            }),
            _ => {
                let message = format!(
                    "`{}`: expected a number of seconds (integer or decimal)",
                    stmt.text()
                );
                self.error(&value.loc, message);
                None
            }
        }
    }

    /// A bare flag (`nopreempt`, `ops`): present means `value`.
    fn flag(&mut self, stmt: &Stmt, value: bool) -> Option<Located<bool>> {
        if let Some(block) = &stmt.block {
            let message = format!("`{}` is a flag and takes no block", stmt.keyword().text);
            self.error(&block.open, message);
            return None;
        }
        if !self.no_args(stmt) {
            return None;
        }
        Some(Located {
            value,
            loc: stmt.keyword().loc,
        })
    }

    /// The arguments of `stmt` (any number, no block).
    fn words(&mut self, stmt: &Stmt) -> Option<Located<Vec<String>>> {
        if let Some(block) = &stmt.block {
            let message = format!("`{}` takes no block", stmt.keyword().text);
            self.error(&block.open, message);
            return None;
        }
        Some(Located {
            value: stmt
                .args()
                .iter()
                .map(|w| w.text.as_str().to_owned())
                .collect(),
            loc: stmt.keyword().loc,
        })
    }

    /// `dynamic_interfaces [allow_if_changes]`: `allow_if_changes` (an
    /// interface recreated with another type) changes nothing for haldir,
    /// which looks interfaces up by name each time.
    fn dynamic_interfaces(&mut self, stmt: &Stmt) -> Option<Located<bool>> {
        match stmt.args() {
            [] => self.flag(stmt, true),
            [word] if word.text == "allow_if_changes" => Some(Located {
                value: true,
                loc: stmt.keyword().loc,
            }),
            [word, ..] => {
                let message = format!(
                    "`{}`: dynamic_interfaces takes nothing or `allow_if_changes`",
                    stmt.text()
                );
                self.error(&word.loc, message);
                None
            }
        }
    }

    /// A block of one value per line (`virtual_ipaddress { ... }`,
    /// `unicast_peer { ... }`); keepalived's options after a value are not
    /// supported. `form` describes a valid line.
    fn list_block(&mut self, stmt: &Stmt, form: &str) -> Option<Located<Vec<Located<String>>>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let keyword = &stmt.keyword().text;
        let errors_before = self.errors.len();
        let mut values = Vec::with_capacity(block.items.len());
        for entry in &block.items {
            if let Some(extra) = entry.args().first() {
                let message = format!(
                    "{keyword} entry `{}`: `{}` and anything after the address is not supported; write only {form} on each line",
                    entry.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
            } else if let Some(inner) = &entry.block {
                let message = format!("{keyword} entry `{}`: takes no block", entry.text());
                self.error(&inner.open, message);
            } else {
                values.push(located(entry.keyword()));
            }
        }
        (self.errors.len() == errors_before).then(|| Located {
            value: values,
            loc: stmt.keyword().loc,
        })
    }
}

/// The addresses of a `virtual_server_group` entry: `ADDRESS` alone, or
/// `ADDRESS-LAST`, where LAST replaces the address's last IPv4 octet
/// (decimal) or IPv6 group (hex) and the range runs up to it (keepalived.conf(5)).
fn expand_range(text: &str) -> Result<Vec<String>, String> {
    let Some((first, last)) = text.split_once('-') else {
        return Ok(vec![text.to_owned()]);
    };
    match first.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let mut octets = v4.octets();
            let end: u8 = last
                .parse()
                .map_err(|_| format!("`{last}` is not the last octet of an IPv4 range (0-255)"))?;
            if end < octets[3] {
                return Err(format!(
                    "the range ends ({end}) before it starts ({})",
                    octets[3]
                ));
            }
            Ok((octets[3]..=end)
                .map(|n| {
                    octets[3] = n;
                    std::net::Ipv4Addr::from(octets).to_string()
                })
                .collect())
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let mut groups = v6.segments();
            let end = u16::from_str_radix(last, 16)
                .map_err(|_| format!("`{last}` is not the last group of an IPv6 range (hex)"))?;
            if end < groups[7] {
                return Err(format!(
                    "the range ends ({end:x}) before it starts ({:x})",
                    groups[7]
                ));
            }
            Ok((groups[7]..=end)
                .map(|n| {
                    groups[7] = n;
                    std::net::Ipv6Addr::from(groups).to_string()
                })
                .collect())
        }
        Err(_) => Err(format!("`{first}` is not an IP address")),
    }
}

fn located(word: &Word) -> Located<String> {
    Located {
        value: word.text.as_str().to_owned(),
        loc: word.loc,
    }
}

fn located_bool(word: &Word, value: bool) -> Located<bool> {
    Located {
        value,
        loc: word.loc,
    }
}

/// An example line for a keyword, for "needs a value" messages.
fn example(keyword: &str) -> String {
    let value = match keyword {
        "state" => "BACKUP",
        "interface" => "eth0",
        "virtual_router_id" => "51",
        "priority" => "100",
        "advert_int" | "delay_loop" => "1",
        "version" | "vrrp_version" => "3",
        "preempt_delay" | "garp_master_delay" | "garp_master_refresh" => "5",
        "garp_master_repeat" | "garp_master_refresh_repeat" => "5",
        "garp_interval" => "0.001",
        "unicast_src_ip" => "10.0.0.1",
        "auth_type" => "PASS",
        "auth_pass" => "secret",
        "active_key" => "1",
        "mode" => "enforce",
        "anti_replay" => "time",
        "time_window" => "5",
        "router_id" => "lvs-a",
        "notify_timeout" => "30",
        "protocol" => "TCP",
        "lb_algo" | "lvs_sched" => "wrr",
        "lb_kind" | "lvs_method" => "DR",
        "persistence_timeout" => "300",
        "persistence_granularity" => "255.255.255.0",
        "weight" => "1",
        "uthreshold" | "lthreshold" => "100",
        _ => "VALUE",
    };
    format!("{keyword} {value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts a line into a configuration, in the block under test.
    type Wrap = fn(&str) -> String;

    /// Every accepted keyword reaches a reader (no `unreachable!` arm), with
    /// a value or as a flag or block.
    #[test]
    fn every_accepted_keyword_has_a_reader() {
        let wrap: [(&BlockKeywords, Wrap); 7] = [
            (&SYNC_GROUP, |l| format!("vrrp_sync_group VG {{\n{l}\n}}\n")),
            (&GLOBAL_DEFS, |l| format!("global_defs {{\n{l}\n}}\n")),
            (&INSTANCE, |l| format!("vrrp_instance VI {{\n{l}\n}}\n")),
            (&AUTHENTICATION, |l| {
                format!("vrrp_instance VI {{\nauthentication {{\n{l}\n}}\n}}\n")
            }),
            (&AUTH_HMAC, |l| {
                format!("vrrp_instance VI {{\nauth_hmac {{\n{l}\n}}\n}}\n")
            }),
            (&VIRTUAL_SERVER, |l| {
                format!("virtual_server 192.0.2.1 80 {{\n{l}\n}}\n")
            }),
            (&REAL_SERVER, |l| {
                format!("virtual_server 192.0.2.1 80 {{\nreal_server 10.0.0.1 80 {{\n{l}\n}}\n}}\n")
            }),
        ];
        for (block, wrap) in wrap {
            for keyword in block.accepted {
                for line in [
                    keyword.to_string(),
                    format!("{keyword} 1"),
                    format!("{keyword} {{\n1\n}}"),
                ] {
                    // Errors are expected for most; a panic is the failure.
                    let _ = crate::parse_keepalived(&wrap(&line), "k.conf");
                }
            }
        }
    }
}
