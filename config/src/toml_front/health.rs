//! The TOML front-end's health-checking part: the checker tables of a real
//! server (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`, `DNS_CHECK`), the
//! checker defaults and quorum keys of virtual and real servers,
//! `[[vrrp_script]]` and an instance's `track_script`. Shape only, as the
//! rest of the front-end; the rules are in `validate_health`.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Expected, Reader};
use crate::draft::{
    CheckDefaultsDraft, CheckDraft, CheckKindDraft, Located, Present, RealServerDraft,
    SorryServerDraft, TrackEntryDraft, TrackScriptDraft, UrlDraft, VirtualServerDraft,
    VrrpScriptDraft,
};

/// `TCP_CHECK`.
const TCP_KEYS: &[&str] = connection_keywords!();
/// `HTTP_GET`.
const HTTP_KEYS: &[&str] = http_keywords!();
/// `SSL_GET`.
const SSL_KEYS: &[&str] = http_keywords!("verify", "ca_file");
/// `MISC_CHECK` (keepalived: no connection options).
const MISC_KEYS: &[&str] = misc_keywords!("group");
/// `DNS_CHECK`.
const DNS_KEYS: &[&str] = dns_keywords!();
/// `SMTP_CHECK`.
const SMTP_KEYS: &[&str] = smtp_keywords!();
/// `UDP_CHECK`.
const UDP_KEYS: &[&str] = udp_keywords!();
/// `PING_CHECK`.
const PING_KEYS: &[&str] = ping_keywords!();
/// A `url` of `HTTP_GET` / `SSL_GET`.
const URL_KEYS: &[&str] = url_keywords!();
/// `sorry_server` written as a table.
const SORRY_KEYS: &[&str] = &["ip", "port"];
/// `[[vrrp_script]]`.
const SCRIPT_KEYS: &[&str] = vrrp_script_keywords!("name"; "group");
/// A `track_script` entry written as a table.
const TRACK_KEYS: &[&str] = &["name", "weight"];
/// Keys of a `[[track_file]]` table.
const TRACK_FILE_KEYS: &[&str] = track_file_keywords!("name"; "reverse");
/// Keys of a `[[track_process]]` table.
const TRACK_PROCESS_KEYS: &[&str] = track_process_keywords!("name"; "reverse");
/// Keys of a `track_file` or `track_interface` entry of an instance written as a table.
const TRACK_ENTRY_KEYS: &[&str] = &["name", "weight", "reverse"];
/// Keys of a `track_file`'s `init_file = { ... }`.
const INIT_FILE_KEYS: &[&str] = &["value", "overwrite"];

impl Reader<'_> {
    /// Reads `key` of a `[[virtual_server]]` if it is a health-checking key;
    /// false if it is not one.
    pub(super) fn virtual_server_health_key(
        &mut self,
        draft: &mut VirtualServerDraft,
        key: &'static str,
        value: &Spanned<DeValue<'_>>,
    ) -> bool {
        if key != "delay_loop"
            && self.check_default(&mut draft.extras_mut().check_defaults, key, value)
        {
            return true;
        }
        match key {
            "quorum" => draft.extras_mut().quorum = self.integer(key, value),
            "hysteresis" => draft.extras_mut().hysteresis = self.integer(key, value),
            "sorry_server" => draft.extras_mut().sorry_server = self.sorry_server(value),
            "sorry_server_inhibit" => {
                draft.extras_mut().sorry_server_inhibit = self.boolean(key, value)
            }
            "inhibit_on_failure" => {
                draft.extras_mut().inhibit_on_failure = self.boolean(key, value)
            }
            "omega" => draft.extras_mut().omega = self.boolean(key, value),
            "virtualhost" => draft.extras_mut().virtualhost = self.string(key, value),
            "quorum_up" => draft.extras_mut().quorum_up = self.string(key, value),
            "quorum_down" => draft.extras_mut().quorum_down = self.string(key, value),
            _ => return false,
        }
        true
    }

    /// Reads a health-checking `key` of a `[[virtual_server.real_server]]`
    /// (the caller has checked that it is an accepted key).
    pub(super) fn real_server_health_key(
        &mut self,
        draft: &mut RealServerDraft,
        key: &'static str,
        value: &Spanned<DeValue<'_>>,
    ) {
        if self.check_default(&mut draft.extras_mut().check_defaults, key, value) {
            return;
        }
        let kind = match key {
            "inhibit_on_failure" => {
                draft.extras_mut().inhibit_on_failure = self.boolean(key, value);
                return;
            }
            "virtualhost" => {
                draft.extras_mut().virtualhost = self.string(key, value);
                return;
            }
            "notify_up" => {
                draft.extras_mut().notify_up = self.string(key, value);
                return;
            }
            "notify_down" => {
                draft.extras_mut().notify_down = self.string(key, value);
                return;
            }
            "TCP_CHECK" => CheckKindDraft::Tcp,
            "HTTP_GET" => CheckKindDraft::Http,
            "SSL_GET" => CheckKindDraft::Ssl,
            "MISC_CHECK" => CheckKindDraft::Misc,
            "DNS_CHECK" => CheckKindDraft::Dns,
            "SMTP_CHECK" => CheckKindDraft::Smtp,
            "UDP_CHECK" => CheckKindDraft::Udp,
            "PING_CHECK" => CheckKindDraft::Ping,
            other => unreachable!("REAL_SERVER_KEYS entry {other} has no reader"),
        };
        for (table, at) in self.tables_or_table(key, value) {
            let check = self.check(kind, table, at);
            draft.checks.push(check);
        }
    }

    /// A table (`KEY = { ... }` / `[KEY]`) or an array of tables (`[[KEY]]`), each
    /// with where it starts.
    fn tables_or_table<'v, 'i>(
        &mut self,
        key: &str,
        value: &'v Spanned<DeValue<'i>>,
    ) -> Vec<(&'v DeTable<'i>, &'v Spanned<DeValue<'i>>)> {
        match value.get_ref() {
            DeValue::Table(table) => vec![(table, value)],
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| Some((self.table(key, item)?, item)))
                .collect(),
            _ => {
                self.type_error::<()>(key, value, Expected::Table);
                Vec::new()
            }
        }
    }

    /// The checker settings shared by the three levels; false if `key` is not one.
    fn check_default(
        &mut self,
        defaults: &mut CheckDefaultsDraft,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> bool {
        match key {
            "connect_timeout" => defaults.connect_timeout = self.seconds(key, value),
            "retry" | "nb_get_retry" => {
                if let Some(retry) = self.integer(key, value) {
                    match defaults.retry.take() {
                        None => defaults.retry = Some(retry),
                        Some(other) => {
                            // Report the later one (table order is not file order).
                            let (first, second) = if (other.loc.line, other.loc.col)
                                < (retry.loc.line, retry.loc.col)
                            {
                                (other, retry)
                            } else {
                                (retry, other)
                            };
                            let second_key = if first_key_is_retry(self.text, &second) {
                                "retry"
                            } else {
                                "nb_get_retry"
                            };
                            let message = format!(
                                "{second_key} = {}: {} at {} already sets this (nb_get_retry is retry's old name); keep one",
                                second.value,
                                if second_key == "retry" { "nb_get_retry" } else { "retry" },
                                first.loc
                            );
                            self.errors
                                .push(crate::error::ConfigError::at(&second.loc, message));
                            defaults.retry = Some(first);
                        }
                    }
                }
            }
            "delay_before_retry" => defaults.delay_before_retry = self.seconds(key, value),
            "warmup" => defaults.warmup = self.seconds(key, value),
            "delay_loop" => defaults.delay_loop = self.seconds(key, value),
            "alpha" => defaults.alpha = self.boolean(key, value),
            _ => return false,
        }
        true
    }

    fn check(
        &mut self,
        kind: CheckKindDraft,
        table: &DeTable<'_>,
        at: &Spanned<DeValue<'_>>,
    ) -> CheckDraft {
        let mut draft = CheckDraft::new(self.index.loc(at.span().start), kind);
        let accepted = match kind {
            CheckKindDraft::Tcp => TCP_KEYS,
            CheckKindDraft::Http => HTTP_KEYS,
            CheckKindDraft::Ssl => SSL_KEYS,
            CheckKindDraft::Misc => MISC_KEYS,
            CheckKindDraft::Dns => DNS_KEYS,
            CheckKindDraft::Smtp => SMTP_KEYS,
            CheckKindDraft::Udp => UDP_KEYS,
            CheckKindDraft::Ping => PING_KEYS,
        };
        let place = kind.keyword();
        for (key, value) in table {
            let Some(name) = self.known_key(key, place, accepted) else {
                continue;
            };
            draft.present.push(name);
            if self.check_default(&mut draft.defaults, name, value) {
                continue;
            }
            match name {
                "connect_ip" => draft.connect_ip = self.string(name, value),
                "connect_port" => draft.connect_port = self.integer(name, value),
                "bindto" => draft.extras_mut().bindto = self.string(name, value),
                "bind_port" => draft.extras_mut().bind_port = self.integer(name, value),
                "url" => {
                    draft.urls = self
                        .tables_or_table("url", value)
                        .into_iter()
                        .map(|(table, at)| self.url(table, at))
                        .collect()
                }
                "virtualhost" => draft.extras_mut().virtualhost = self.string(name, value),
                "verify" => draft.extras_mut().verify = self.boolean(name, value),
                "ca_file" => draft.extras_mut().ca_file = self.string(name, value),
                "misc_path" => draft.extras_mut().misc_path = self.string(name, value),
                "misc_timeout" => draft.extras_mut().misc_timeout = self.seconds(name, value),
                "misc_dynamic" => draft.extras_mut().misc_dynamic = self.boolean(name, value),
                "user" => draft.extras_mut().user = self.string(name, value),
                "group" => draft.extras_mut().group = self.string(name, value),
                "type" => draft.extras_mut().dns_type = self.string(name, value),
                "name" => draft.extras_mut().dns_name = self.string(name, value),
                "helo_name" => draft.extras_mut().helo_name = self.string(name, value),
                "payload" => draft.extras_mut().payload = self.string(name, value),
                // `require_reply = true` (any reply) or `"HEX"` (a reply starting so).
                "require_reply" => {
                    draft.extras_mut().require_reply = match value.get_ref() {
                        DeValue::Boolean(true) => Some(self.located(String::new(), value)),
                        DeValue::Boolean(false) => None,
                        _ => self.string(name, value),
                    }
                }
                "min_reply_length" => {
                    draft.extras_mut().min_reply_length = self.integer(name, value)
                }
                "max_reply_length" => {
                    draft.extras_mut().max_reply_length = self.integer(name, value)
                }
                other => unreachable!("{place} key {other} has no reader"),
            }
        }
        draft
    }

    fn url(&mut self, table: &DeTable<'_>, at: &Spanned<DeValue<'_>>) -> UrlDraft {
        let mut draft = UrlDraft {
            loc: self.index.loc(at.span().start),
            present: Present::new(),
            path: None,
            status_code: None,
            digest: None,
            regex: None,
            regex_no_match: None,
            virtualhost: None,
        };
        for (key, value) in table {
            let Some(name) = self.known_key(key, "url", URL_KEYS) else {
                continue;
            };
            draft.present.push(name);
            match name {
                "path" => draft.path = self.string(name, value),
                "status_code" => {
                    // keepalived writes `status_code 200` or `status_code 200-299 404`.
                    draft.status_code = match value.get_ref() {
                        DeValue::Integer(_) => self
                            .integer(name, value)
                            .map(|n| self.located(n.value.to_string(), value)),
                        _ => self.string(name, value),
                    }
                }
                "digest" => draft.digest = self.string(name, value),
                "regex" => draft.regex = self.string(name, value),
                "regex_no_match" => draft.regex_no_match = self.boolean(name, value),
                _ => draft.virtualhost = self.string(name, value),
            }
        }
        draft
    }

    fn sorry_server(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Located<SorryServerDraft>> {
        let mut draft = SorryServerDraft::default();
        match value.get_ref() {
            DeValue::String(_) => draft.text = self.string("sorry_server", value),
            DeValue::Table(table) => {
                for (key, item) in table {
                    match self.known_key(key, "sorry_server", SORRY_KEYS) {
                        Some("ip") => draft.ip = self.string("ip", item),
                        Some(_) => draft.port = self.integer("port", item),
                        None => {}
                    }
                }
            }
            _ => {
                let message = format!(
                    "{}: expected \"IP PORT\" (a string) or a table {{ ip = \"IP\", port = PORT }}",
                    self.snippet("sorry_server", value)
                );
                self.error(value, message);
                return None;
            }
        }
        Some(self.located(draft, value))
    }

    /// `[[vrrp_script]]` tables.
    pub(super) fn vrrp_scripts(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<VrrpScriptDraft> {
        self.table_array("vrrp_script", value)
            .into_iter()
            .map(|(table, at)| {
                let mut draft = VrrpScriptDraft::new(self.index.loc(at.span().start));
                for (key, value) in table {
                    let Some(name) = self.known_key(key, "[[vrrp_script]]", SCRIPT_KEYS) else {
                        continue;
                    };
                    draft.present.push(name);
                    match name {
                        "name" => draft.name = self.string(name, value),
                        "script" => draft.script = self.string(name, value),
                        "interval" => draft.interval = self.seconds(name, value),
                        "timeout" => draft.timeout = self.seconds(name, value),
                        "weight" => draft.weight = self.integer(name, value),
                        "rise" => draft.rise = self.integer(name, value),
                        "fall" => draft.fall = self.integer(name, value),
                        "user" => draft.user = self.string(name, value),
                        "group" => draft.group = self.string(name, value),
                        _ => draft.init_fail = self.boolean(name, value),
                    }
                }
                draft
            })
            .collect()
    }

    /// `track_script = ["name", { name = "other", weight = -10 }]`.
    pub(super) fn track_script(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Located<Vec<TrackScriptDraft>>> {
        let DeValue::Array(items) = value.get_ref() else {
            let message = format!(
                "{}: expected an array of script names or {{ name, weight }} tables, e.g. [\"chk_web\", {{ name = \"chk_db\", weight = -20 }}]",
                self.snippet("track_script", value)
            );
            self.error(value, message);
            return None;
        };
        let mut entries = Vec::with_capacity(items.len());
        for item in items.iter() {
            let mut entry = TrackScriptDraft {
                loc: self.index.loc(item.span().start),
                name: None,
                weight: None,
            };
            match item.get_ref() {
                DeValue::String(_) => entry.name = self.string("track_script", item),
                DeValue::Table(table) => {
                    for (key, v) in table {
                        match self.known_key(key, "track_script entry", TRACK_KEYS) {
                            Some("name") => entry.name = self.string("name", v),
                            Some(_) => entry.weight = self.integer("weight", v),
                            None => {}
                        }
                    }
                    if entry.name.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "name") {
                        self.error(
                            item,
                            "this track_script entry has no `name`; write { name = \"SCRIPT\", weight = N }",
                        );
                    }
                }
                _ => {
                    let message = format!(
                        "track_script entry {}: expected a script name (string) or a table {{ name, weight }}",
                        self.source_text(item)
                    );
                    self.error(item, message);
                    continue;
                }
            }
            entries.push(entry);
        }
        Some(self.located(entries, value))
    }

    /// `[[track_file]]` tables: `name`, `file`, `weight`, `reverse`,
    /// `init_file = { value = 0, overwrite = false }`.
    pub(super) fn track_files(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<crate::track_file::TrackFileDraft> {
        self.table_array("track_file", value)
            .into_iter()
            .map(|(table, at)| {
                let mut draft =
                    crate::track_file::TrackFileDraft::new(self.index.loc(at.span().start));
                for (key, value) in table {
                    let Some(name) = self.known_key(key, "[[track_file]]", TRACK_FILE_KEYS) else {
                        continue;
                    };
                    draft.present.push(name);
                    match name {
                        "name" => draft.name = self.string(name, value),
                        "file" => draft.file = self.string(name, value),
                        "weight" => draft.weight = self.integer(name, value),
                        "reverse" => draft.reverse = self.boolean(name, value),
                        _ => self.init_file(&mut draft, value),
                    }
                }
                draft
            })
            .collect()
    }

    /// `[[track_process]]` tables: `name`, `process` (a name, or an array of the name and
    /// the parameters), `param_match`, `weight`, `reverse`, `quorum`, `quorum_max`,
    /// `delay`, `fork_delay`, `terminate_delay`, `full_command`.
    pub(super) fn track_processes(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<crate::track_process::TrackProcessDraft> {
        self.table_array("track_process", value)
            .into_iter()
            .map(|(table, at)| {
                let mut draft =
                    crate::track_process::TrackProcessDraft::new(self.index.loc(at.span().start));
                for (key, value) in table {
                    let Some(name) = self.known_key(key, "[[track_process]]", TRACK_PROCESS_KEYS)
                    else {
                        continue;
                    };
                    draft.present.push(name);
                    match name {
                        "name" => draft.name = self.string(name, value),
                        "process" => {
                            draft.process = match value.get_ref() {
                                DeValue::String(_) => self.string(name, value).map(|s| Located {
                                    loc: s.loc,
                                    value: vec![s.value],
                                }),
                                _ => self.string_array(name, value).map(|a| Located {
                                    loc: a.loc,
                                    value: a.value.into_iter().map(|w| w.value).collect(),
                                }),
                            }
                        }
                        "param_match" => draft.param_match = self.string(name, value),
                        "weight" => draft.weight = self.integer(name, value),
                        "reverse" => draft.reverse = self.boolean(name, value),
                        "quorum" => draft.quorum = self.integer(name, value),
                        "quorum_max" => draft.quorum_max = self.integer(name, value),
                        "delay" => draft.delay = self.seconds(name, value),
                        "fork_delay" => draft.fork_delay = self.seconds(name, value),
                        "terminate_delay" => draft.terminate_delay = self.seconds(name, value),
                        _ => draft.full_command = self.boolean(name, value),
                    }
                }
                draft
            })
            .collect()
    }

    /// `init_file = { value = N, overwrite = B }` (both optional).
    fn init_file(
        &mut self,
        draft: &mut crate::track_file::TrackFileDraft,
        value: &Spanned<DeValue<'_>>,
    ) {
        let Some(table) = self.table("init_file", value) else {
            return;
        };
        draft.init = Some(self.index.loc(value.span().start));
        for (key, v) in table {
            match self.known_key(key, "init_file", INIT_FILE_KEYS) {
                Some("value") => draft.init_value = self.integer("value", v),
                Some(_) => draft.init_overwrite = self.boolean("overwrite", v),
                None => {}
            }
        }
    }

    /// An instance's `track_file = ["name", { name = "other", weight = -10, reverse = true }]`
    /// or `track_interface = ["eth1", { name = "eth2", weight = -20 }]` (`key`).
    pub(super) fn track_entries(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Located<Vec<TrackEntryDraft>>> {
        let DeValue::Array(items) = value.get_ref() else {
            let message = format!(
                "{}: expected an array of names or {{ name, weight, reverse }} tables, e.g. [\"first\", {{ name = \"second\", weight = -2 }}]",
                self.snippet(key, value)
            );
            self.error(value, message);
            return None;
        };
        let place = format!("{key} entry");
        let mut entries = Vec::with_capacity(items.len());
        for item in items.iter() {
            let mut entry = TrackEntryDraft {
                loc: self.index.loc(item.span().start),
                name: None,
                weight: None,
                reverse: None,
            };
            match item.get_ref() {
                DeValue::String(_) => entry.name = self.string(key, item),
                DeValue::Table(table) => {
                    for (k, v) in table {
                        match self.known_key(k, &place, TRACK_ENTRY_KEYS) {
                            Some("name") => entry.name = self.string("name", v),
                            Some("weight") => entry.weight = self.integer("weight", v),
                            Some(_) => entry.reverse = self.boolean("reverse", v),
                            None => {}
                        }
                    }
                    if entry.name.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "name") {
                        let message = format!(
                            "this {key} entry has no `name`; write {{ name = \"NAME\", weight = N }}"
                        );
                        self.error(item, message);
                    }
                }
                _ => {
                    let message = format!(
                        "{key} entry {}: expected a name (string) or a table {{ name, weight, reverse }}",
                        self.source_text(item)
                    );
                    self.error(item, message);
                    continue;
                }
            }
            entries.push(entry);
        }
        Some(self.located(entries, value))
    }
}

/// Whether the key written before the value at `value.loc` is `retry` (not `nb_get_retry`).
fn first_key_is_retry(text: &str, value: &Located<i64>) -> bool {
    let line = text.lines().nth(value.loc.line as usize - 1).unwrap_or("");
    let before: String = line.chars().take(value.loc.col as usize - 1).collect();
    let key = before.trim_end().trim_end_matches('=').trim_end();
    !key.ends_with("nb_get_retry")
}
