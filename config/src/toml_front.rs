//! The TOML front-end: parses the text with span preservation and walks the
//! tables by hand, so that every unknown key and every wrongly typed value is
//! reported (with its line:col), not just the first. Produces a [`Draft`];
//! ranges and cross-field rules are `validate`'s job.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::draft::{
    AuthDraft, Draft, InstanceDraft, Located, RealServerDraft, SyncGroupDraft, VirtualServerDraft,
    VirtualServerSlot,
};
use crate::error::{ConfigError, FileName, LineIndex};

mod health;

/// Keys accepted at the top level of the file.
const TOP_KEYS: &[&str] = &[
    "global_defs",
    "vrrp_instance",
    "virtual_server",
    "vrrp_script",
    "track_file",
    "track_process",
    "vrrp_sync_group",
    "announce",
];
/// Keys accepted in `[announce]` (a haldir extension, `config/src/announce.rs`).
const ANNOUNCE_KEYS: &[&str] = &[
    "interface",
    "drain",
    "vips",
    "track_interface",
    "sloppy_tcp",
    "sloppy_sctp",
    "bmp_listen",
];
/// Keys accepted in `[global_defs]`.
const GLOBAL_KEYS: &[&str] = &[
    "router_id",
    "vrrp_version",
    "script_user",
    "notify_timeout",
    "enable_script_security",
    "lvs_sync_daemon",
    "dynamic_interfaces",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "lvs_timeouts",
    "notify_fifo",
    "notify_fifo_script",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "fifo_write_vrrp_states_on_reload",
];
/// Keys of a notify FIFO written as a table.
const FIFO_KEYS: &[&str] = &["path", "user", "group"];
/// Keys of a notify FIFO's script written as a table.
const FIFO_SCRIPT_KEYS: &[&str] = &["command", "user", "group"];
/// Keys accepted in `[global_defs] lvs_sync_daemon = { ... }`.
const LVS_SYNC_KEYS: &[&str] = &[
    "interface",
    "instance",
    "id",
    "maxlen",
    "port",
    "ttl",
    "group",
    "bulk_resync",
];
/// Keys accepted in each `[[vrrp_instance]]`, in the order the docs list them.
const INSTANCE_KEYS: &[&str] = &[
    "name",
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
    "track_script",
    "track_interface",
    "track_file",
    "track_process",
];
/// Keys accepted in each `[[vrrp_sync_group]]`.
const SYNC_GROUP_KEYS: &[&str] = &[
    "name",
    "group",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
];
/// Keys accepted in each `[[virtual_server]]`, in the order the docs list them.
const VIRTUAL_SERVER_KEYS: &[&str] =
    virtual_server_keywords!("ip", "port", "fwmark"; "scheduler_flags");
/// Keys accepted in each `[[virtual_server.real_server]]`.
const REAL_SERVER_KEYS: &[&str] = real_server_keywords!("ip", "port";);
/// Keys accepted in an instance's `authentication` table.
const AUTH_KEYS: &[&str] = &["auth_type", "auth_pass"];
/// Keys accepted in an instance's `auth_hmac` table.
const AUTH_HMAC_KEYS: &[&str] = &["key", "active_key", "mode", "anti_replay", "time_window"];
/// Keys accepted in each entry of `auth_hmac.key`.
const AUTH_HMAC_KEY_KEYS: &[&str] = &["id", "value"];

/// Parses `text` into a [`Draft`] plus every shape error found (unknown keys,
/// wrong types). A TOML syntax error stops here: it is returned alone.
pub(crate) fn read(text: &str, file: FileName) -> Result<(Draft, Vec<ConfigError>), ConfigError> {
    let index = LineIndex::new(file, text);
    let document = DeTable::parse(text).map_err(|e| {
        let message = format!("TOML syntax error: {}", e.message());
        match e.span() {
            Some(span) => ConfigError::at(&index.loc(span.start), message),
            None => ConfigError::whole_file(file, message),
        }
    })?;
    let mut reader = Reader {
        text,
        index,
        errors: Vec::new(),
    };
    let draft = reader.document(document.get_ref());
    Ok((draft, reader.errors))
}

/// Walks a parsed document, collecting errors.
struct Reader<'a> {
    text: &'a str,
    index: LineIndex<'a>,
    errors: Vec<ConfigError>,
}

/// What a value of each kind looks like, for "expected ..." messages.
#[derive(Clone, Copy)]
enum Expected {
    String,
    Integer,
    Seconds,
    Boolean,
    StringArray,
    Table,
    TableArray,
}

impl Expected {
    fn describe(self) -> &'static str {
        match self {
            Expected::String => "a string",
            Expected::Integer => "an integer",
            Expected::Seconds => "a number of seconds (integer or decimal)",
            Expected::Boolean => "true or false",
            Expected::StringArray => "an array of strings",
            Expected::Table => "a table",
            Expected::TableArray => "an array of tables",
        }
    }
}

impl Reader<'_> {
    fn document(&mut self, table: &DeTable<'_>) -> Draft {
        let mut draft = Draft {
            file: self.index.file(),
            default_version: None,
            router_id: None,
            scripts: Default::default(),
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
        };
        for (key, value) in table {
            match self.known_key(key, "the top level", TOP_KEYS) {
                Some("global_defs") => {
                    if let Some(globals) = self.table("global_defs", value) {
                        self.global_defs(globals, &mut draft);
                    }
                }
                Some("virtual_server") => {
                    draft.virtual_servers = self
                        .virtual_servers(value)
                        .into_iter()
                        .map(|d| VirtualServerSlot::Draft(Box::new(d)))
                        .collect()
                }
                Some("vrrp_script") => draft.vrrp_scripts = self.vrrp_scripts(value),
                Some("track_file") => draft.track_files = self.track_files(value),
                Some("track_process") => draft.track_processes = self.track_processes(value),
                Some("vrrp_sync_group") => draft.sync_groups = self.sync_groups(value),
                Some("announce") => draft.announce = self.announce(value),
                Some(_) => draft.instances = self.instances(value),
                None => {}
            }
        }
        draft
    }

    fn global_defs(&mut self, table: &DeTable<'_>, draft: &mut Draft) {
        for (key, value) in table {
            match self.known_key(key, "[global_defs]", GLOBAL_KEYS) {
                Some("router_id") => draft.router_id = self.string("router_id", value),
                Some("script_user") => {
                    draft.scripts.script_user = self.string("script_user", value)
                }
                Some("notify_timeout") => {
                    draft.scripts.notify_timeout = self.seconds("notify_timeout", value)
                }
                Some("enable_script_security") => {
                    draft.scripts.enable_script_security =
                        self.boolean("enable_script_security", value)
                }
                Some("lvs_sync_daemon") => draft.lvs_sync_daemon = self.lvs_sync_daemon(value),
                Some("dynamic_interfaces") => {
                    draft.dynamic_interfaces = self.boolean("dynamic_interfaces", value)
                }
                Some("static_ipaddress") => {
                    draft.static_ipaddress = self.string_array("static_ipaddress", value)
                }
                Some("static_routes") => {
                    draft.static_routes = self.string_array("static_routes", value)
                }
                Some("static_rules") => {
                    draft.static_rules = self.string_array("static_rules", value)
                }
                Some("lvs_timeouts") => {
                    draft.lvs_timeouts = self.string("lvs_timeouts", value).map(|text| Located {
                        value: text.value.split_whitespace().map(str::to_owned).collect(),
                        loc: text.loc,
                    })
                }
                Some("fifo_write_vrrp_states_on_reload") => {
                    draft.notify_fifos.write_states_on_reload =
                        self.boolean("fifo_write_vrrp_states_on_reload", value)
                }
                Some(fifo) if crate::notify_fifo::fifo_keyword(fifo).is_some() => {
                    let (events, script) = crate::notify_fifo::fifo_keyword(fifo).expect("matched");
                    let parsed = self.fifo(fifo, script, value);
                    if script {
                        *draft.notify_fifos.script_mut(events) = parsed;
                    } else {
                        *draft.notify_fifos.fifo_mut(events) = parsed;
                    }
                }
                Some(_) => draft.default_version = self.integer("vrrp_version", value),
                None => {}
            }
        }
    }

    /// A notify FIFO (`"PATH"` or `{ path, user, group }`) or its script (`"COMMAND"` or
    /// `{ command, user, group }`).
    fn fifo(
        &mut self,
        key: &str,
        script: bool,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<crate::notify_fifo::FifoDraft> {
        if let DeValue::String(_) = value.get_ref() {
            return Some(crate::notify_fifo::FifoDraft {
                value: self.string(key, value)?,
                user: None,
                group: None,
            });
        }
        let table = self.table(key, value)?;
        let (first, keys) = if script {
            ("command", FIFO_SCRIPT_KEYS)
        } else {
            ("path", FIFO_KEYS)
        };
        let (mut main, mut user, mut group) = (None, None, None);
        for (k, v) in table {
            match self.known_key(k, key, keys) {
                Some("user") => user = self.string("user", v),
                Some("group") => group = self.string("group", v),
                Some(_) => main = self.string(first, v),
                None => {}
            }
        }
        let Some(main) = main else {
            let message = format!("{key}: give its `{first}`");
            self.error(value, message);
            return None;
        };
        Some(crate::notify_fifo::FifoDraft {
            value: main,
            user,
            group,
        })
    }

    /// `[announce]`: `interface`, `drain`, `vips`, `track_interface`, `sloppy_tcp`,
    /// `sloppy_sctp`, `bmp_listen`.
    fn announce(&mut self, value: &Spanned<DeValue<'_>>) -> Option<crate::announce::AnnounceDraft> {
        let table = self.table("announce", value)?;
        let mut d = crate::announce::AnnounceDraft::new(self.index.loc(value.span().start));
        for (key, value) in table {
            match self.known_key(key, "[announce]", ANNOUNCE_KEYS) {
                Some("interface") => d.interface = self.string("interface", value),
                Some("drain") => d.drain = self.seconds("drain", value),
                Some("vips") => d.vips = self.string_array("vips", value),
                Some("sloppy_tcp") => d.sloppy_tcp = self.boolean("sloppy_tcp", value),
                Some("sloppy_sctp") => d.sloppy_sctp = self.boolean("sloppy_sctp", value),
                Some("bmp_listen") => d.bmp_listen = self.string("bmp_listen", value),
                Some(_) => d.track_interface = self.string_array("track_interface", value),
                None => {}
            }
        }
        Some(d)
    }

    /// `lvs_sync_daemon = { interface = "eth1", instance = "VI_1", id = 0, ... }`.
    fn lvs_sync_daemon(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<crate::lvs_sync::LvsSyncDraft> {
        let table = self.table("lvs_sync_daemon", value)?;
        let mut d = crate::lvs_sync::LvsSyncDraft::new(self.index.loc(value.span().start));
        for (key, value) in table {
            match self.known_key(key, "lvs_sync_daemon", LVS_SYNC_KEYS) {
                Some("interface") => d.interface = self.string("interface", value),
                Some("instance") => d.instance = self.string("instance", value),
                Some("id") => d.id = self.integer("id", value),
                Some("maxlen") => d.maxlen = self.integer("maxlen", value),
                Some("port") => d.port = self.integer("port", value),
                Some("ttl") => d.ttl = self.integer("ttl", value),
                Some("bulk_resync") => d.bulk_resync = self.boolean("bulk_resync", value),
                Some(_) => d.group = self.string("group", value),
                None => {}
            }
        }
        Some(d)
    }

    fn instances(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<InstanceDraft> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.error(
                    value,
                    "vrrp_instance must be an array of tables: write the header as \
                     [[vrrp_instance]] (double brackets), once per instance",
                );
                return Vec::new();
            }
            _ => {
                self.type_error::<()>("vrrp_instance", value, Expected::TableArray);
                return Vec::new();
            }
        };
        items
            .iter()
            .filter_map(|item| {
                let table = self.table("vrrp_instance", item)?;
                Some(self.instance(table, item))
            })
            .collect()
    }

    fn instance(&mut self, table: &DeTable<'_>, at: &Spanned<DeValue<'_>>) -> InstanceDraft {
        let mut draft = InstanceDraft::new(self.index.loc(at.span().start));
        for (key, value) in table {
            let Some(name) = self.known_key(key, "[[vrrp_instance]]", INSTANCE_KEYS) else {
                continue;
            };
            draft.present.push(name);
            match name {
                "name" => draft.name = self.string(name, value),
                "interface" => draft.interface = self.string(name, value),
                "virtual_router_id" => draft.virtual_router_id = self.integer(name, value),
                "priority" => draft.priority = self.integer(name, value),
                "advert_int" => draft.advert_int = self.seconds(name, value),
                "version" => draft.version = self.integer(name, value),
                "virtual_ipaddress" => draft.virtual_ipaddress = self.string_array(name, value),
                "virtual_ipaddress_excluded" => {
                    draft.virtual_ipaddress_excluded = self.string_array(name, value)
                }
                "virtual_routes" => draft.virtual_routes = self.string_array(name, value),
                "virtual_rules" => draft.virtual_rules = self.string_array(name, value),
                "use_vmac" => draft.use_vmac = self.use_vmac(value),
                "vmac_xmit_base" => draft.vmac_xmit_base = self.boolean("vmac_xmit_base", value),
                "nopreempt" => draft.nopreempt = self.boolean(name, value),
                "preempt_delay" => draft.preempt_delay = self.seconds(name, value),
                "accept" => draft.accept = self.boolean(name, value),
                "unicast_src_ip" => draft.unicast_src_ip = self.string(name, value),
                "unicast_peer" => draft.unicast_peer = self.string_array(name, value),
                "garp_master_delay" => draft.garp_master_delay = self.seconds(name, value),
                "garp_master_repeat" => draft.garp_master_repeat = self.integer(name, value),
                "garp_master_refresh" => draft.garp_master_refresh = self.seconds(name, value),
                "garp_master_refresh_repeat" => {
                    draft.garp_master_refresh_repeat = self.integer(name, value)
                }
                "garp_interval" => draft.garp_interval = self.seconds(name, value),
                "authentication" => draft.authentication = self.authentication(value),
                "auth_hmac" => draft.auth_hmac = self.auth_hmac(value),
                "track_script" => draft.track_script = self.track_script(value),
                "track_interface" => draft.track_interface = self.track_entries(name, value),
                "track_file" => draft.track_file = self.track_entries(name, value),
                "track_process" => draft.track_process = self.track_entries(name, value),
                "notify_master" => draft.notify.master = self.string(name, value),
                "notify_backup" => draft.notify.backup = self.string(name, value),
                "notify_fault" => draft.notify.fault = self.string(name, value),
                "notify_stop" => draft.notify.stop = self.string(name, value),
                "notify" => draft.notify.notify = self.string(name, value),
                other => unreachable!("INSTANCE_KEYS entry {other} has no reader"),
            }
        }
        draft
    }

    fn sync_groups(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<SyncGroupDraft> {
        self.table_array("vrrp_sync_group", value)
            .into_iter()
            .map(|(table, at)| {
                let mut draft = SyncGroupDraft::new(self.index.loc(at.span().start));
                for (key, value) in table {
                    let Some(name) = self.known_key(key, "[[vrrp_sync_group]]", SYNC_GROUP_KEYS)
                    else {
                        continue;
                    };
                    draft.present.push(name);
                    match name {
                        "name" => draft.name = self.string(name, value),
                        "group" => draft.group = self.string_array(name, value),
                        "notify_master" => draft.notify.master = self.string(name, value),
                        "notify_backup" => draft.notify.backup = self.string(name, value),
                        "notify_fault" => draft.notify.fault = self.string(name, value),
                        "notify_stop" => draft.notify.stop = self.string(name, value),
                        "notify" => draft.notify.notify = self.string(name, value),
                        other => unreachable!("SYNC_GROUP_KEYS entry {other} has no reader"),
                    }
                }
                draft
            })
            .collect()
    }

    /// The items of an array of tables written `[[name]]`, each with where it starts.
    fn table_array<'v, 'i>(
        &mut self,
        name: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Vec<(&'v DeTable<'i>, &'v Spanned<DeValue<'i>>)> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                let message = format!(
                    "{name} must be an array of tables: write the header as [[{name}]] (double brackets), once per entry"
                );
                self.error(value, message);
                return Vec::new();
            }
            _ => {
                self.type_error::<()>(name, value, Expected::TableArray);
                return Vec::new();
            }
        };
        items
            .iter()
            .filter_map(|item| Some((self.table(name, item)?, item)))
            .collect()
    }

    fn virtual_servers(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<VirtualServerDraft> {
        self.table_array("virtual_server", value)
            .into_iter()
            .map(|(table, at)| self.virtual_server(table, at))
            .collect()
    }

    fn virtual_server(
        &mut self,
        table: &DeTable<'_>,
        at: &Spanned<DeValue<'_>>,
    ) -> VirtualServerDraft {
        let mut draft = VirtualServerDraft::new(self.index.loc(at.span().start));
        for (key, value) in table {
            let Some(name) = self.known_key(key, "[[virtual_server]]", VIRTUAL_SERVER_KEYS) else {
                continue;
            };
            draft.present.push(name);
            match name {
                "ip" => draft.ip = self.string(name, value),
                "port" => draft.port = self.integer(name, value),
                "fwmark" => draft.fwmark = self.integer(name, value),
                "protocol" => draft.protocol = self.string(name, value),
                "lb_algo" | "lvs_sched" => {
                    if let Some(v) = self.string(name, value) {
                        draft.scheduler.push((name, v));
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(v) = self.string(name, value) {
                        draft.method.push((name, v));
                    }
                }
                "persistence_timeout" => draft.persistence_timeout = self.seconds(name, value),
                "persistence_granularity" => {
                    draft.extras_mut().persistence_granularity = self.string(name, value)
                }
                "ops" => draft.extras_mut().ops = self.boolean(name, value),
                "scheduler_flags" => {
                    if let Some(flags) = self.string_array(name, value) {
                        draft.extras_mut().scheduler_flags = flags.value;
                    }
                }
                "delay_loop" => draft.delay_loop = self.seconds(name, value),
                "real_server" => {
                    draft.real_servers = self
                        .table_array("real_server", value)
                        .into_iter()
                        .map(|(table, at)| self.real_server(table, at))
                        .collect()
                }
                other if self.virtual_server_health_key(&mut draft, other, value) => {}
                other => unreachable!("VIRTUAL_SERVER_KEYS entry {other} has no reader"),
            }
        }
        draft
    }

    fn real_server(&mut self, table: &DeTable<'_>, at: &Spanned<DeValue<'_>>) -> RealServerDraft {
        let mut draft = RealServerDraft::new(self.index.loc(at.span().start));
        for (key, value) in table {
            let Some(name) =
                self.known_key(key, "[[virtual_server.real_server]]", REAL_SERVER_KEYS)
            else {
                continue;
            };
            draft.present.push(name);
            match name {
                "ip" => draft.ip = self.string(name, value),
                "port" => draft.port = self.integer(name, value),
                "weight" => draft.weight = self.integer(name, value),
                "uthreshold" => draft.extras_mut().uthreshold = self.integer(name, value),
                "lthreshold" => draft.extras_mut().lthreshold = self.integer(name, value),
                other => self.real_server_health_key(&mut draft, other, value),
            }
        }
        draft
    }

    fn authentication(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Located<AuthDraft>> {
        let table = self.table("authentication", value)?;
        let mut auth = AuthDraft::default();
        for (key, value) in table {
            let Some(name) = self.known_key(key, "authentication", AUTH_KEYS) else {
                continue;
            };
            auth.present.push(name);
            match name {
                "auth_type" => auth.auth_type = self.string(name, value),
                _ => auth.auth_pass = self.string(name, value),
            }
        }
        Some(self.located(auth, value))
    }

    /// `auth_hmac = { key = [{ id = 1, value = "hex:..." }], active_key = 1,
    /// mode = "enforce", anti_replay = "time", time_window = 5 }`.
    fn auth_hmac(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Located<crate::auth_hmac::AuthHmacDraft>> {
        let table = self.table("auth_hmac", value)?;
        let mut auth = crate::auth_hmac::AuthHmacDraft::default();
        for (key, value) in table {
            let Some(name) = self.known_key(key, "auth_hmac", AUTH_HMAC_KEYS) else {
                continue;
            };
            match name {
                "key" => {
                    for (entry, at) in self.table_array("auth_hmac.key", value) {
                        let mut k = crate::auth_hmac::KeyDraft {
                            loc: self.index.loc(at.span().start),
                            id: None,
                            value: None,
                        };
                        for (key, value) in entry {
                            let Some(name) =
                                self.known_key(key, "auth_hmac.key", AUTH_HMAC_KEY_KEYS)
                            else {
                                continue;
                            };
                            match name {
                                "id" => k.id = self.integer(name, value),
                                _ => k.value = self.string(name, value),
                            }
                        }
                        auth.keys.push(k);
                    }
                }
                "active_key" => auth.active_key = self.integer(name, value),
                "mode" => auth.mode = self.string(name, value),
                "anti_replay" => auth.anti_replay = self.string(name, value),
                "time_window" => auth.time_window = self.integer(name, value),
                other => unreachable!("AUTH_HMAC_KEYS entry {other} has no reader"),
            }
        }
        Some(self.located(auth, value))
    }

    /// Returns the accepted spelling of `key`, or reports it as unknown in `place`.
    fn known_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        place: &str,
        accepted: &[&'static str],
    ) -> Option<&'static str> {
        let name = key.get_ref().as_ref();
        if let Some(&known) = accepted.iter().find(|&&k| k == name) {
            return Some(known);
        }
        let suggestion = accepted
            .iter()
            .filter(|&&k| edit_distance(k, name) <= 2)
            .min_by_key(|&&k| edit_distance(k, name))
            .map(|k| format!("did you mean `{k}`? "))
            .unwrap_or_default();
        let message = format!(
            "unknown key `{name}` in {place}; {suggestion}accepted keys: {}",
            accepted.join(", ")
        );
        self.errors
            .push(ConfigError::at(&self.index.loc(key.span().start), message));
        None
    }

    fn string(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Located<String>> {
        match value.get_ref() {
            DeValue::String(s) => Some(self.located(s.to_string(), value)),
            _ => self.type_error(key, value, Expected::String),
        }
    }

    fn integer(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Located<i64>> {
        match value.get_ref() {
            DeValue::Integer(n) => match i64::from_str_radix(n.as_str(), n.radix()) {
                Ok(n) => Some(self.located(n, value)),
                Err(_) => {
                    let message = format!("{}: integer too large", self.snippet(key, value));
                    self.error(value, message);
                    None
                }
            },
            _ => self.type_error(key, value, Expected::Integer),
        }
    }

    /// A duration in seconds, written as an integer or a float (as keepalived does).
    fn seconds(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Located<f64>> {
        let seconds = match value.get_ref() {
            DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(x) => x.as_str().replace('_', "").parse::<f64>().ok(),
            _ => return self.type_error(key, value, Expected::Seconds),
        };
        match seconds.filter(|s| s.is_finite()) {
            Some(s) => Some(self.located(s, value)),
            None => {
                let message = format!(
                    "{}: must be a finite number of seconds",
                    self.snippet(key, value)
                );
                self.error(value, message);
                None
            }
        }
    }

    /// `use_vmac = true` (keepalived's defaults) or `"NAME [MAC]"` (its
    /// arguments); `false` is no VMAC.
    fn use_vmac(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Located<Vec<String>>> {
        match value.get_ref() {
            DeValue::Boolean(true) => Some(self.located(Vec::new(), value)),
            DeValue::Boolean(false) => None,
            DeValue::String(s) => {
                let args = s.split_whitespace().map(str::to_owned).collect();
                Some(self.located(args, value))
            }
            _ => self.type_error("use_vmac", value, Expected::String),
        }
    }

    fn boolean(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Located<bool>> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(self.located(*b, value)),
            _ => self.type_error(key, value, Expected::Boolean),
        }
    }

    /// An array of strings; every non-string element is reported.
    fn string_array(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Located<Vec<Located<String>>>> {
        let DeValue::Array(items) = value.get_ref() else {
            return self.type_error(key, value, Expected::StringArray);
        };
        let mut strings = Vec::with_capacity(items.len());
        let mut all_strings = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => strings.push(self.located(s.to_string(), item)),
                other => {
                    all_strings = false;
                    let message = format!(
                        "{}: every element must be a string, found {} `{}`",
                        key,
                        article(other.type_str()),
                        self.source_text(item)
                    );
                    self.error(item, message);
                }
            }
        }
        all_strings.then(|| self.located(strings, value))
    }

    fn table<'v, 'i>(
        &mut self,
        key: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => self.type_error(key, value, Expected::Table),
        }
    }

    /// Reports `key = value` as having the wrong type. Always returns `None`.
    fn type_error<T>(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
        expected: Expected,
    ) -> Option<T> {
        let message = format!(
            "{}: expected {}, found {}",
            self.snippet(key, value),
            expected.describe(),
            article(value.get_ref().type_str())
        );
        self.error(value, message);
        None
    }

    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        let loc = self.index.loc(at.span().start);
        self.errors.push(ConfigError::at(&loc, message));
    }

    fn located<T, U>(&self, value: T, at: &Spanned<U>) -> Located<T> {
        Located {
            value,
            loc: self.index.loc(at.span().start),
        }
    }

    /// `key = <the value as written>`, for messages.
    fn snippet<T>(&self, key: &str, value: &Spanned<T>) -> String {
        format!("{key} = {}", self.source_text(value))
    }

    /// The value as written in the file, shortened to one line of at most 40 characters.
    fn source_text<T>(&self, value: &Spanned<T>) -> String {
        let written = self.text.get(value.span()).unwrap_or("").trim();
        let first_line = written.lines().next().unwrap_or("");
        if first_line.chars().count() > 40 || first_line.len() < written.len() {
            let short: String = first_line.chars().take(40).collect();
            format!("{short}…")
        } else {
            first_line.to_owned()
        }
    }
}

/// "a string", "an integer", ... for a TOML type name.
fn article(type_name: &str) -> String {
    let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {type_name}")
}

/// Levenshtein distance, for "did you mean" suggestions on short keys.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("priority", "priority"), 0);
        assert_eq!(edit_distance("priority", "prioity"), 1);
        assert_eq!(edit_distance("priority", "prority"), 1);
        assert_eq!(edit_distance("accept", "acept"), 1);
        assert_eq!(edit_distance("name", "vrid"), 4);
    }
}
