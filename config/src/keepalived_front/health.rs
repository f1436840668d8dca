//! The keepalived.conf front-end's health-checking part: `vrrp_script`, an
//! instance's `track_script`, the checker settings and quorum keys of
//! `virtual_server` and `real_server`, and the checker blocks (`TCP_CHECK`,
//! `HTTP_GET`, `SSL_GET`, `MISC_CHECK`, `DNS_CHECK`, with `url`). They fill
//! the same draft fields as `toml_front/health.rs`; the rules are in
//! `validate_health`.

use super::tree::Stmt;
use super::{located, BlockKeywords, Front, Seen};
use crate::draft::{
    CheckDefaultsDraft, CheckDraft, CheckKindDraft, Located, Present, RealServerDraft,
    SorryServerDraft, TrackEntryDraft, TrackScriptDraft, UrlDraft, VirtualServerDraft,
    VrrpScriptDraft,
};
use crate::track_file::TrackFileDraft;
use crate::track_process::TrackProcessDraft;

pub(super) const VRRP_SCRIPT: BlockKeywords = BlockKeywords {
    place: "vrrp_script",
    accepted: vrrp_script_keywords!(;),
    planned: &[],
    ignored: &[],
};

pub(super) const TRACK_FILE: BlockKeywords = BlockKeywords {
    place: "track_file",
    accepted: track_file_keywords!(;),
    planned: &[],
    ignored: &[],
};

pub(super) const TRACK_PROCESS: BlockKeywords = BlockKeywords {
    place: "track_process",
    accepted: track_process_keywords!(;),
    planned: &[],
    ignored: &[],
};

pub(super) const TCP_CHECK: BlockKeywords = BlockKeywords {
    place: "TCP_CHECK",
    accepted: connection_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const HTTP_GET: BlockKeywords = BlockKeywords {
    place: "HTTP_GET",
    accepted: http_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const SSL_GET: BlockKeywords = BlockKeywords {
    place: "SSL_GET",
    accepted: HTTP_GET.accepted,
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const MISC_CHECK: BlockKeywords = BlockKeywords {
    place: "MISC_CHECK",
    accepted: misc_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const DNS_CHECK: BlockKeywords = BlockKeywords {
    place: "DNS_CHECK",
    accepted: dns_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const SMTP_CHECK: BlockKeywords = BlockKeywords {
    place: "SMTP_CHECK",
    accepted: smtp_keywords!(),
    planned: &[(
        "host",
        "SMTP_CHECK's old host { } sub-blocks are not implemented; write one SMTP_CHECK per host with connect_ip",
    )],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const UDP_CHECK: BlockKeywords = BlockKeywords {
    place: "UDP_CHECK",
    accepted: udp_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const PING_CHECK: BlockKeywords = BlockKeywords {
    place: "PING_CHECK",
    accepted: ping_keywords!(),
    planned: &[],
    ignored: &[("smtp_alert", super::MAIL_ALERTS)],
};

pub(super) const URL: BlockKeywords = BlockKeywords {
    place: "url",
    accepted: url_keywords!(),
    planned: &[],
    ignored: &[],
};

/// The checker kind of a real-server keyword, if it is a checker block.
pub(super) fn check_kind(keyword: &str) -> Option<CheckKindDraft> {
    Some(match keyword {
        "TCP_CHECK" => CheckKindDraft::Tcp,
        "HTTP_GET" => CheckKindDraft::Http,
        "SSL_GET" => CheckKindDraft::Ssl,
        "MISC_CHECK" => CheckKindDraft::Misc,
        "DNS_CHECK" => CheckKindDraft::Dns,
        "SMTP_CHECK" => CheckKindDraft::Smtp,
        "UDP_CHECK" => CheckKindDraft::Udp,
        "PING_CHECK" => CheckKindDraft::Ping,
        _ => return None,
    })
}

/// The key a keyword counts as for "already set" (`nb_get_retry` is `retry`'s old name).
pub(super) fn same_as(keyword: &'static str) -> &'static str {
    if keyword == "nb_get_retry" {
        "retry"
    } else {
        keyword
    }
}

impl Front {
    /// Reads `keyword` into the checker settings shared by the three levels;
    /// false if it is not one of them.
    fn check_default(
        &mut self,
        defaults: &mut CheckDefaultsDraft,
        keyword: &str,
        stmt: &Stmt,
    ) -> bool {
        match keyword {
            "connect_timeout" => defaults.connect_timeout = self.seconds(stmt),
            "retry" | "nb_get_retry" => defaults.retry = self.integer(stmt),
            "delay_before_retry" => defaults.delay_before_retry = self.seconds(stmt),
            "warmup" => defaults.warmup = self.seconds(stmt),
            "delay_loop" => defaults.delay_loop = self.seconds(stmt),
            "alpha" => defaults.alpha = self.flag(stmt, true),
            _ => return false,
        }
        true
    }

    /// A health-checking keyword of a `virtual_server` (the caller has
    /// checked duplicates).
    pub(super) fn virtual_server_health(
        &mut self,
        d: &mut VirtualServerDraft,
        keyword: &str,
        stmt: &Stmt,
    ) {
        if self.check_default(&mut d.extras_mut().check_defaults, keyword, stmt) {
            return;
        }
        match keyword {
            "quorum" => d.extras_mut().quorum = self.integer(stmt),
            "hysteresis" => d.extras_mut().hysteresis = self.integer(stmt),
            "sorry_server" => d.extras_mut().sorry_server = self.sorry_server(stmt),
            "sorry_server_inhibit" => d.extras_mut().sorry_server_inhibit = self.flag(stmt, true),
            "inhibit_on_failure" => d.extras_mut().inhibit_on_failure = self.flag(stmt, true),
            "omega" => d.extras_mut().omega = self.flag(stmt, true),
            "virtualhost" => d.extras_mut().virtualhost = self.word(stmt),
            "quorum_up" => d.extras_mut().quorum_up = self.command(stmt),
            "quorum_down" => d.extras_mut().quorum_down = self.command(stmt),
            other => unreachable!("VIRTUAL_SERVER keyword {other} has no reader"),
        }
    }

    /// A health-checking keyword of a `real_server` (the caller has checked
    /// duplicates of the single-value ones).
    pub(super) fn real_server_health(
        &mut self,
        d: &mut RealServerDraft,
        keyword: &str,
        stmt: &Stmt,
    ) {
        if let Some(kind) = check_kind(keyword) {
            if let Some(check) = self.check(kind, stmt) {
                d.checks.push(check);
            }
            return;
        }
        if self.check_default(&mut d.extras_mut().check_defaults, keyword, stmt) {
            return;
        }
        match keyword {
            "inhibit_on_failure" => d.extras_mut().inhibit_on_failure = self.flag(stmt, true),
            "virtualhost" => d.extras_mut().virtualhost = self.word(stmt),
            "notify_up" => d.extras_mut().notify_up = self.command(stmt),
            "notify_down" => d.extras_mut().notify_down = self.command(stmt),
            other => unreachable!("REAL_SERVER keyword {other} has no reader"),
        }
    }

    /// `sorry_server IP [PORT]`, as the text form the TOML string has.
    fn sorry_server(&mut self, stmt: &Stmt) -> Option<Located<SorryServerDraft>> {
        if let Some(block) = &stmt.block {
            self.error(&block.open, "`sorry_server` takes IP [PORT], not a block");
            return None;
        }
        match stmt.args() {
            [] => {
                self.error(
                    &stmt.keyword().loc,
                    "`sorry_server` needs an address and optionally a port: `sorry_server 10.0.0.250 80`",
                );
                None
            }
            [_, _, extra, ..] => {
                let message = format!(
                    "`{}`: sorry_server takes IP [PORT]; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
            words => {
                let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
                let loc = words[0].loc;
                Some(Located {
                    value: SorryServerDraft {
                        text: Some(Located {
                            value: text.join(" "),
                            loc,
                        }),
                        ip: None,
                        port: None,
                    },
                    loc,
                })
            }
        }
    }

    /// A checker block: `TCP_CHECK { ... }` and the others.
    fn check(&mut self, kind: CheckKindDraft, stmt: &Stmt) -> Option<CheckDraft> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let keywords = match kind {
            CheckKindDraft::Tcp => &TCP_CHECK,
            CheckKindDraft::Http => &HTTP_GET,
            CheckKindDraft::Ssl => &SSL_GET,
            CheckKindDraft::Misc => &MISC_CHECK,
            CheckKindDraft::Dns => &DNS_CHECK,
            CheckKindDraft::Smtp => &SMTP_CHECK,
            CheckKindDraft::Udp => &UDP_CHECK,
            CheckKindDraft::Ping => &PING_CHECK,
        };
        let mut d = CheckDraft::new(stmt.keyword().loc, kind);
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, keywords) else {
                continue;
            };
            // A checker may test several urls.
            if keyword != "url" && !self.first(&mut seen, same_as(keyword), s) {
                continue;
            }
            d.present.push(keyword);
            if self.check_default(&mut d.defaults, keyword, s) {
                continue;
            }
            match keyword {
                "connect_ip" => d.connect_ip = self.word(s),
                "connect_port" => d.connect_port = self.integer(s),
                "bindto" => d.extras_mut().bindto = self.word(s),
                "bind_port" => d.extras_mut().bind_port = self.integer(s),
                "url" => {
                    if let Some(url) = self.url(s) {
                        d.urls.push(url);
                    }
                }
                "virtualhost" => d.extras_mut().virtualhost = self.word(s),
                "misc_path" => d.extras_mut().misc_path = self.command(s),
                "misc_timeout" => d.extras_mut().misc_timeout = self.seconds(s),
                "misc_dynamic" => d.extras_mut().misc_dynamic = self.flag(s, true),
                "user" => {
                    if let Some((user, group)) = self.user_group(s) {
                        let extras = d.extras_mut();
                        extras.user = Some(user);
                        extras.group = group;
                    }
                }
                "type" => d.extras_mut().dns_type = self.word(s),
                "name" => d.extras_mut().dns_name = self.word(s),
                "helo_name" => d.extras_mut().helo_name = self.word(s),
                // keepalived reads the rest of the line as one hex string ("de ad be ef").
                "payload" => d.extras_mut().payload = self.hex_words(s, false),
                "require_reply" => d.extras_mut().require_reply = self.hex_words(s, true),
                "min_reply_length" => d.extras_mut().min_reply_length = self.integer(s),
                "max_reply_length" => d.extras_mut().max_reply_length = self.integer(s),
                other => unreachable!("{} keyword {other} has no reader", keywords.place),
            }
        }
        Some(d)
    }

    /// The words of `payload HEX...` / `require_reply [HEX...]` joined as one hex string
    /// (`optional`: none at all is allowed, as `require_reply` alone).
    fn hex_words(&mut self, stmt: &Stmt, optional: bool) -> Option<Located<String>> {
        if let Some(block) = &stmt.block {
            let message = format!("`{}` takes hex digits, not a block", stmt.keyword().text);
            self.error(&block.open, message);
            return None;
        }
        let words: Vec<&str> = stmt.args().iter().map(|w| w.text.as_str()).collect();
        if words.is_empty() && !optional {
            let message = format!(
                "`{}` needs hex digits, e.g. `{} 00 01 ab`",
                stmt.keyword().text,
                stmt.keyword().text
            );
            self.error(&stmt.keyword().loc, message);
            return None;
        }
        Some(Located {
            value: words.join(" "),
            loc: *stmt.args().first().map_or(&stmt.keyword().loc, |w| &w.loc),
        })
    }

    /// `url { path /health status_code 200 ... }`.
    fn url(&mut self, stmt: &Stmt) -> Option<UrlDraft> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let mut d = UrlDraft {
            loc: stmt.keyword().loc,
            present: Present::new(),
            path: None,
            status_code: None,
            digest: None,
            regex: None,
            regex_no_match: None,
            virtualhost: None,
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &URL) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "path" => d.path = self.word(s),
                "digest" => d.digest = self.word(s),
                // `status_code 200` or `status_code 200-299 404`.
                "status_code" => d.status_code = self.command(s),
                "regex" => d.regex = self.word(s),
                "regex_no_match" => d.regex_no_match = self.flag(s, true),
                "virtualhost" => d.virtualhost = self.word(s),
                other => unreachable!("URL keyword {other} has no reader"),
            }
        }
        Some(d)
    }

    /// `user USER [GROUP]` of a `vrrp_script` or `MISC_CHECK`.
    fn user_group(&mut self, stmt: &Stmt) -> Option<(Located<String>, Option<Located<String>>)> {
        if let Some(block) = &stmt.block {
            self.error(&block.open, "`user` takes a value, not a block");
            return None;
        }
        match stmt.args() {
            [user] => Some((located(user), None)),
            [user, group] => Some((located(user), Some(located(group)))),
            [] => {
                self.error(
                    &stmt.keyword().loc,
                    "`user` needs a user, optionally a group: `user keepalived_script` or `user nobody nogroup`",
                );
                None
            }
            [_, _, extra, ..] => {
                let message = format!(
                    "`{}`: user takes USER [GROUP]; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
        }
    }

    /// The one name after a named block's keyword (`vrrp_script chk_web {`); its absence
    /// or a second word is reported (`example` is a name for the message).
    fn block_name(&mut self, stmt: &Stmt, example: &str) -> Option<Located<String>> {
        let keyword = &stmt.keyword().text;
        match stmt.args() {
            [name] => Some(located(name)),
            [] => {
                let message = format!("{keyword} needs a name: `{keyword} {example} {{`");
                self.error(&stmt.keyword().loc, message);
                None
            }
            [_, extra, ..] => {
                let message = format!(
                    "`{}`: {keyword} takes one name; remove `{}`",
                    stmt.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                None
            }
        }
    }

    /// `vrrp_script NAME { script ... interval ... }`.
    pub(super) fn vrrp_script(&mut self, stmt: &Stmt) -> VrrpScriptDraft {
        let mut d = VrrpScriptDraft::new(stmt.keyword().loc);
        // The name is the block's argument; reported here if absent.
        d.present.push("name");
        d.name = self.block_name(stmt, "chk_web");
        let Some(block) = self.block(stmt) else {
            // Reported; do not also report a missing `script`.
            d.present.push("script");
            return d;
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &VRRP_SCRIPT) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "script" => d.script = self.command(s),
                "interval" => d.interval = self.seconds(s),
                "timeout" => d.timeout = self.seconds(s),
                "weight" => d.weight = self.integer(s),
                "rise" => d.rise = self.integer(s),
                "fall" => d.fall = self.integer(s),
                "user" => {
                    if let Some((user, group)) = self.user_group(s) {
                        d.user = Some(user);
                        d.group = group;
                    }
                }
                "init_fail" => d.init_fail = self.flag(s, true),
                other => unreachable!("VRRP_SCRIPT keyword {other} has no reader"),
            }
        }
        d
    }

    /// `track_script { chk_web  chk_db weight -20 }`: one script per line,
    /// optionally with a weight that overrides the script's.
    pub(super) fn track_script(&mut self, stmt: &Stmt) -> Option<Located<Vec<TrackScriptDraft>>> {
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let errors_before = self.errors.len();
        let mut entries = Vec::with_capacity(block.items.len());
        for entry in &block.items {
            if let Some(inner) = &entry.block {
                let message = format!("track_script entry `{}`: takes no block", entry.text());
                self.error(&inner.open, message);
                continue;
            }
            let name = entry.keyword();
            let weight = match entry.args() {
                [] => None,
                [key, value] if key.text == "weight" => self.integer_word(entry, value),
                [key] if key.text == "weight" => {
                    let message = format!(
                        "track_script entry `{}`: weight needs a number, e.g. `{} weight -20`",
                        entry.text(),
                        name.text
                    );
                    self.error(&key.loc, message);
                    continue;
                }
                args => {
                    let extra = match args {
                        [key, _, extra, ..] if key.text == "weight" => extra,
                        [extra, ..] => extra,
                        [] => unreachable!("matched above"),
                    };
                    let message = format!(
                        "track_script entry `{}`: write `NAME` or `NAME weight N` on each line; remove `{}`",
                        entry.text(),
                        extra.text
                    );
                    self.error(&extra.loc, message);
                    continue;
                }
            };
            entries.push(TrackScriptDraft {
                loc: name.loc,
                name: Some(located(name)),
                weight,
            });
        }
        (self.errors.len() == errors_before).then(|| Located {
            value: entries,
            loc: stmt.keyword().loc,
        })
    }

    /// `track_file NAME { file PATH  weight N [reverse]  init_file [VALUE] [overwrite] }`
    /// (also spelled `vrrp_track_file`).
    pub(super) fn track_file(&mut self, stmt: &Stmt) -> TrackFileDraft {
        let mut d = TrackFileDraft::new(stmt.keyword().loc);
        // The name is the block's argument; reported here if absent.
        d.present.push("name");
        d.name = self.block_name(stmt, "app_ready");
        let Some(block) = self.block(stmt) else {
            // Reported; do not also report a missing `file`.
            d.present.push("file");
            return d;
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &TRACK_FILE) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "file" => d.file = self.word(s),
                "weight" => (d.weight, d.reverse) = self.block_weight(s),
                "init_file" => self.init_file(s, &mut d),
                other => unreachable!("TRACK_FILE keyword {other} has no reader"),
            }
        }
        d
    }

    /// `track_process NAME { process NAME [PARAM ...]  param_match [exact|partial|initial]
    /// weight N [reverse]  quorum N  quorum_max N  delay S  fork_delay S
    /// terminate_delay S  full_command }` (also spelled `vrrp_track_process`).
    pub(super) fn track_process(&mut self, stmt: &Stmt) -> TrackProcessDraft {
        let mut d = TrackProcessDraft::new(stmt.keyword().loc);
        d.present.push("name");
        d.name = self.block_name(stmt, "haproxy_up");
        let Some(block) = self.block(stmt) else {
            d.present.push("process");
            return d;
        };
        let mut seen = Seen::new();
        for s in &block.items {
            let Some(keyword) = self.keyword(s, &TRACK_PROCESS) else {
                continue;
            };
            if !self.first(&mut seen, keyword, s) {
                continue;
            }
            d.present.push(keyword);
            match keyword {
                "process" => d.process = self.words(s),
                "param_match" => {
                    d.param_match = match s.args() {
                        [] => Some(Located {
                            value: String::new(),
                            loc: s.keyword().loc,
                        }),
                        _ => self.word(s),
                    }
                }
                "weight" => (d.weight, d.reverse) = self.block_weight(s),
                "quorum" => d.quorum = self.integer(s),
                "quorum_max" => d.quorum_max = self.integer(s),
                "delay" => d.delay = self.seconds(s),
                "fork_delay" => d.fork_delay = self.seconds(s),
                "terminate_delay" => d.terminate_delay = self.seconds(s),
                "full_command" => d.full_command = self.flag(s, true),
                other => unreachable!("TRACK_PROCESS keyword {other} has no reader"),
            }
        }
        d
    }

    /// `weight N [reverse]` of a `track_file` or `track_process` block.
    fn block_weight(&mut self, s: &Stmt) -> (Option<Located<i64>>, Option<Located<bool>>) {
        if let Some(block) = &s.block {
            self.error(&block.open, "`weight` takes a value, not a block");
            return (None, None);
        }
        match s.args() {
            [value] => (self.integer_word(s, value), None),
            [value, reverse] if reverse.text == "reverse" => (
                self.integer_word(s, value),
                Some(Located {
                    value: true,
                    loc: reverse.loc,
                }),
            ),
            [] => {
                self.error(
                    &s.keyword().loc,
                    "`weight` needs a number, optionally `reverse`: `weight -10` or `weight 2 reverse`",
                );
                (None, None)
            }
            [_, extra, ..] => {
                let message = format!(
                    "`{}`: write `weight N` or `weight N reverse`; remove `{}`",
                    s.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                (None, None)
            }
        }
    }

    /// `init_file [VALUE] [overwrite]` of a `track_file` block.
    fn init_file(&mut self, s: &Stmt, d: &mut TrackFileDraft) {
        if let Some(block) = &s.block {
            self.error(&block.open, "`init_file` takes values, not a block");
            return;
        }
        d.init = Some(s.keyword().loc);
        let args = s.args();
        let (value, rest) = match args.split_first() {
            Some((first, rest)) if first.text != "overwrite" => (Some(first), rest),
            _ => (None, args),
        };
        if let Some(value) = value {
            d.init_value = self.integer_word(s, value);
        }
        match rest {
            [] => {}
            [overwrite] if overwrite.text == "overwrite" => {
                d.init_overwrite = Some(Located {
                    value: true,
                    loc: overwrite.loc,
                });
            }
            [extra, ..] => {
                let message = format!(
                    "`{}`: write `init_file [VALUE] [overwrite]`; remove `{}`",
                    s.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
            }
        }
    }

    /// An instance's `track_file { app_ready  disk weight -2 reverse }` or
    /// `track_interface { eth1  eth2 weight -20 }`: one name per line, optionally
    /// `weight N` and `reverse` / `noreverse`.
    pub(super) fn track_entries(&mut self, stmt: &Stmt) -> Option<Located<Vec<TrackEntryDraft>>> {
        let keyword = stmt.keyword().text.clone();
        if !self.no_args(stmt) {
            return None;
        }
        let block = self.block(stmt)?;
        let errors_before = self.errors.len();
        let mut entries = Vec::with_capacity(block.items.len());
        for entry in &block.items {
            if let Some(inner) = &entry.block {
                let message = format!("{keyword} entry `{}`: takes no block", entry.text());
                self.error(&inner.open, message);
                continue;
            }
            let name = entry.keyword();
            let mut weight = None;
            let mut reverse = None;
            let mut args = entry.args();
            if let [key, rest @ ..] = args {
                if key.text == "weight" {
                    let Some((value, rest)) = rest.split_first() else {
                        let message = format!(
                            "{keyword} entry `{}`: weight needs a number, e.g. `{} weight -2`",
                            entry.text(),
                            name.text
                        );
                        self.error(&key.loc, message);
                        continue;
                    };
                    weight = self.integer_word(entry, value);
                    args = rest;
                }
            }
            if let [direction, rest @ ..] = args {
                if matches!(direction.text.as_str(), "reverse" | "noreverse") {
                    reverse = Some(Located {
                        value: direction.text == "reverse",
                        loc: direction.loc,
                    });
                    args = rest;
                }
            }
            if let Some(extra) = args.first() {
                let message = format!(
                    "{keyword} entry `{}`: write `NAME [weight N] [reverse|noreverse]` on each line; remove `{}`",
                    entry.text(),
                    extra.text
                );
                self.error(&extra.loc, message);
                continue;
            }
            entries.push(TrackEntryDraft {
                loc: name.loc,
                name: Some(located(name)),
                weight,
                reverse,
            });
        }
        (self.errors.len() == errors_before).then(|| Located {
            value: entries,
            loc: stmt.keyword().loc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted keyword of the blocks read here reaches a reader (no
    /// `unreachable!` arm), with a value or as a flag or block.
    #[test]
    fn every_accepted_keyword_has_a_reader() {
        type Wrap = fn(&str) -> String;
        fn rs(check: &str, l: &str) -> String {
            format!("virtual_server 192.0.2.1 80 {{\nreal_server 10.0.0.1 80 {{\n{check} {{\n{l}\n}}\n}}\n}}\n")
        }
        let wrap: [(&[&str], Wrap); 9] = [
            (VRRP_SCRIPT.accepted, |l| {
                format!("vrrp_script S {{\n{l}\n}}\n")
            }),
            (TRACK_FILE.accepted, |l| {
                format!("track_file F {{\n{l}\n}}\n")
            }),
            (TRACK_PROCESS.accepted, |l| {
                format!("track_process P {{\n{l}\n}}\n")
            }),
            (TCP_CHECK.accepted, |l| rs("TCP_CHECK", l)),
            (HTTP_GET.accepted, |l| rs("HTTP_GET", l)),
            (SSL_GET.accepted, |l| rs("SSL_GET", l)),
            (MISC_CHECK.accepted, |l| rs("MISC_CHECK", l)),
            (DNS_CHECK.accepted, |l| rs("DNS_CHECK", l)),
            (URL.accepted, |l| {
                rs("HTTP_GET", &format!("url {{\n{l}\n}}"))
            }),
        ];
        for (accepted, wrap) in wrap {
            for keyword in accepted {
                for line in [
                    keyword.to_string(),
                    format!("{keyword} 1"),
                    format!("{keyword} 1 2"),
                    format!("{keyword} {{\n1\n}}"),
                ] {
                    // Errors are expected for most; a panic is the failure.
                    let _ = crate::parse_keepalived(&wrap(&line), "k.conf");
                }
            }
        }
        let _ = crate::parse_keepalived(
            "vrrp_instance VI {\ntrack_script {\na\nb weight -2\nc x\nd {\n}\n}\n}\n",
            "k.conf",
        );
        let _ = crate::parse_keepalived(
            "vrrp_instance VI {\ntrack_file {\na\nb weight -2 reverse\nc weight\nd x\ne {\n}\n}\n}\n",
            "k.conf",
        );
        let _ = crate::parse_keepalived(
            "vrrp_instance VI {\ntrack_interface {\na\nb weight -2 reverse\nc weight\nd x\ne {\n}\n}\n}\n",
            "k.conf",
        );
    }
}
