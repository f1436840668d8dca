//! The TOML form of a [`Model`] (`haldir convert`): every setting written
//! out explicitly, so that reading the text back gives the same model (apart
//! from the source locations).
//!
//! Every model struct is destructured field by field, so a field added to
//! the model does not compile here until it is written out (or listed in
//! [`not_converted`]). The health-checking and tracking-script settings are
//! written by [`health`]. [`not_converted`] names what is not written (nothing
//! at the moment); `haldir convert` refuses rather than print a lossy file.

mod health;

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{
    AddressFamily, Authentication, LvsMethod, LvsProtocol, LvsScripts, Model, RealServer,
    ScriptSettings, SyncGroup, VirtualServer, VirtualServerAddress, VrrpInstance, VrrpVersion,
};

/// The TOML text of `model`, in the layout `FORMAT.md` documents. Exact
/// (parsing it gives `model` back, apart from locations) when
/// [`not_converted`] is empty.
pub fn to_toml(model: &Model) -> String {
    let Model {
        router_id,
        scripts,
        vrrp_instances,
        virtual_servers,
        vrrp_scripts,
        sync_groups,
        lvs_sync_daemon,
        track_files,
        track_processes,
        dynamic_interfaces,
        statics,
        lvs_timeouts,
        notify_fifos,
        announce,
    } = model;
    let mut out = String::new();
    let default_scripts = ScriptSettings::default();
    if router_id.is_some()
        || *scripts != default_scripts
        || lvs_sync_daemon.is_some()
        || *dynamic_interfaces
        || *statics != crate::model::Statics::default()
        || *lvs_timeouts != crate::model::LvsTimeouts::default()
        || *notify_fifos != crate::notify_fifo::NotifyFifos::default()
    {
        out.push_str("[global_defs]\n");
    }
    if let Some(router_id) = router_id {
        line(&mut out, "router_id", string(router_id));
    }
    if *dynamic_interfaces {
        line(&mut out, "dynamic_interfaces", true);
    }
    if *lvs_timeouts != crate::model::LvsTimeouts::default() {
        line(&mut out, "lvs_timeouts", string(&lvs_timeouts.words()));
    }
    for (key, list) in [
        ("static_ipaddress", entries(&statics.addresses)),
        ("static_routes", entries(&statics.routes)),
        ("static_rules", entries(&statics.rules)),
    ] {
        if list != "[]" {
            line(&mut out, key, list);
        }
    }
    if let Some(user) = &scripts.user {
        let user = match &scripts.group {
            Some(group) => format!("{user} {group}"),
            None => user.clone(),
        };
        line(&mut out, "script_user", string(&user));
    }
    if scripts.security {
        line(&mut out, "enable_script_security", true);
    }
    if scripts.notify_timeout != default_scripts.notify_timeout {
        line(
            &mut out,
            "notify_timeout",
            scripts.notify_timeout.as_secs_f64(),
        );
    }
    crate::notify_fifo::toml_lines(&mut out, notify_fifos, string);
    if let Some(sync) = lvs_sync_daemon {
        out.push_str(&crate::lvs_sync::toml_line(sync, string));
    }
    for script in vrrp_scripts {
        if !out.is_empty() {
            out.push('\n');
        }
        health::vrrp_script(&mut out, script);
    }
    for file in track_files {
        if !out.is_empty() {
            out.push('\n');
        }
        crate::track_file::toml_table(&mut out, file, string);
    }
    for process in track_processes {
        if !out.is_empty() {
            out.push('\n');
        }
        crate::track_process::toml_table(&mut out, process, string);
    }
    for instance in vrrp_instances {
        if !out.is_empty() {
            out.push('\n');
        }
        vrrp_instance(&mut out, instance);
    }
    for group in sync_groups {
        if !out.is_empty() {
            out.push('\n');
        }
        sync_group(&mut out, group);
    }
    for vs in virtual_servers {
        if !out.is_empty() {
            out.push('\n');
        }
        virtual_server(&mut out, vs);
    }
    if let Some(announce) = announce {
        if !out.is_empty() {
            out.push('\n');
        }
        crate::announce::toml_table(&mut out, announce, string);
    }
    out
}

/// The settings of `model` that [`to_toml`] does not write yet, each as
/// "what (where)"; empty when the TOML is exact.
pub fn not_converted(model: &Model) -> Vec<String> {
    // Every setting of the model is written; kept for the settings to come.
    let _ = model;
    Vec::new()
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML array of strings, one per entry, each written as its `Display`.
fn entries<T: std::fmt::Display>(list: &[T]) -> String {
    string_list(&list.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn vrrp_instance(out: &mut String, i: &VrrpInstance) {
    let VrrpInstance {
        name,
        interface,
        virtual_router_id,
        priority,
        advert_int_centis,
        version,
        family: _, // follows from the addresses
        virtual_ipaddress,
        virtual_ipaddress_excluded,
        virtual_routes,
        virtual_rules,
        use_vmac,
        vmac_xmit_base,
        preempt,
        preempt_delay_secs,
        accept,
        unicast_src_ip,
        unicast_peer,
        garp_master_delay_secs,
        garp_master_repeat,
        garp_master_refresh_repeat,
        garp_master_refresh_secs,
        garp_interval_millis,
        authentication,
        auth_hmac,
        notify,
        track_script,
        track_interface,
        track_file,
        track_process,
        loc: _,
    } = i;
    out.push_str("[[vrrp_instance]]\n");
    line(out, "name", string(name));
    line(out, "interface", string(interface));
    line(out, "virtual_router_id", virtual_router_id);
    line(out, "priority", priority);
    line(
        out,
        "version",
        match version {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        },
    );
    line(out, "advert_int", decimal((*advert_int_centis).into(), 100));
    line(out, "virtual_ipaddress", entries(virtual_ipaddress));
    // Lists written only when not empty, in the entry syntax both front-ends read.
    for (key, list) in [
        (
            "virtual_ipaddress_excluded",
            entries(virtual_ipaddress_excluded),
        ),
        ("virtual_routes", entries(virtual_routes)),
        ("virtual_rules", entries(virtual_rules)),
    ] {
        if list != "[]" {
            line(out, key, list);
        }
    }
    if let Some(vmac) = use_vmac {
        line(
            out,
            "use_vmac",
            string(&format!("{} {}", vmac.name, vmac.mac_text())),
        );
    }
    if *vmac_xmit_base {
        line(out, "vmac_xmit_base", true);
    }
    line(out, "nopreempt", !preempt);
    line(out, "preempt_delay", preempt_delay_secs);
    line(out, "accept", accept);
    if let Some(src) = unicast_src_ip {
        line(out, "unicast_src_ip", string(&src.to_string()));
    }
    if !unicast_peer.is_empty() {
        let peers: Vec<String> = unicast_peer
            .iter()
            .map(|p| string(&p.to_string()))
            .collect();
        line(out, "unicast_peer", format!("[{}]", peers.join(", ")));
    }
    line(out, "garp_master_delay", garp_master_delay_secs);
    line(out, "garp_master_repeat", garp_master_repeat);
    line(
        out,
        "garp_master_refresh_repeat",
        garp_master_refresh_repeat,
    );
    line(out, "garp_master_refresh", garp_master_refresh_secs);
    line(out, "garp_interval", decimal(*garp_interval_millis, 1000));
    if let Some(Authentication::Pass(pass)) = authentication {
        line(
            out,
            "authentication",
            format!("{{ auth_type = \"PASS\", auth_pass = {} }}", string(pass)),
        );
    }
    if let Some(auth) = auth_hmac {
        line(out, "auth_hmac", crate::auth_hmac::to_toml(auth, string));
    }
    for (key, command) in notify.iter() {
        line(out, key, string(command));
    }
    if !track_interface.is_empty() {
        // A plain name for the FAULT-on-down entries, a table for the others.
        let entries: Vec<String> = track_interface
            .iter()
            .map(|t| {
                if t.weight == 0 && !t.reverse {
                    string(&t.name)
                } else {
                    format!(
                        "{{ name = {}, weight = {}, reverse = {} }}",
                        string(&t.name),
                        t.weight,
                        t.reverse
                    )
                }
            })
            .collect();
        line(out, "track_interface", format!("[{}]", entries.join(", ")));
    }
    health::track_script(out, track_script);
    crate::track_file::toml_line(out, track_file, string);
    crate::track_process::toml_line(out, track_process, string);
}

fn sync_group(out: &mut String, g: &SyncGroup) {
    let SyncGroup {
        name,
        members,
        notify,
        loc: _,
    } = g;
    out.push_str("[[vrrp_sync_group]]\n");
    line(out, "name", string(name));
    line(out, "group", string_list(members));
    for (key, command) in notify.iter() {
        line(out, key, string(command));
    }
}

/// A TOML array of basic strings.
fn string_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", items.join(", "))
}

fn virtual_server(out: &mut String, vs: &VirtualServer) {
    let VirtualServer {
        address,
        family,
        protocol,
        scheduler,
        method,
        persistence,
        one_packet,
        scheduler_flags,
        delay_loop_millis,
        quorum,
        hysteresis,
        sorry_server,
        omega,
        quorum_scripts,
        real_servers,
        loc: _,
    } = vs;
    out.push_str("[[virtual_server]]\n");
    match *address {
        VirtualServerAddress::Socket { ip, port } => {
            line(out, "ip", string(&ip.to_string()));
            line(out, "port", port);
        }
        VirtualServerAddress::Fwmark(mark) => line(out, "fwmark", mark),
    }
    let protocol = match protocol {
        LvsProtocol::Tcp => "TCP",
        LvsProtocol::Udp => "UDP",
        LvsProtocol::Sctp => "SCTP",
    };
    line(out, "protocol", string(protocol));
    line(out, "lb_algo", string(scheduler.name()));
    let method = match method {
        LvsMethod::DirectRouting => "DR",
        LvsMethod::Nat => "NAT",
        LvsMethod::Tunnel => "TUN",
    };
    line(out, "lb_kind", string(method));
    if let Some(persistence) = persistence {
        line(out, "persistence_timeout", persistence.timeout_secs);
        let granularity = match family {
            AddressFamily::Ipv4 => {
                let len = u32::from(persistence.granularity_prefix_len);
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Ipv4Addr::from(mask).to_string()
            }
            AddressFamily::Ipv6 => persistence.granularity_prefix_len.to_string(),
        };
        line(out, "persistence_granularity", string(&granularity));
    }
    if *one_packet {
        line(out, "ops", true);
    }
    if !scheduler_flags.is_empty() {
        let names: Vec<String> = scheduler_flags
            .names(*scheduler)
            .into_iter()
            .map(str::to_owned)
            .collect();
        line(out, "scheduler_flags", string_list(&names));
    }
    if let Some(millis) = delay_loop_millis {
        line(out, "delay_loop", decimal(*millis, 1000));
    }
    health::virtual_server(out, *quorum, *hysteresis, sorry_server, *omega);
    lvs_scripts(out, ("quorum_up", "quorum_down"), quorum_scripts);
    for rs in real_servers {
        real_server(out, rs);
    }
}

fn real_server(out: &mut String, rs: &RealServer) {
    let RealServer {
        ip,
        port,
        weight,
        upper_threshold,
        lower_threshold,
        inhibit_on_failure,
        checks,
        notify,
        loc: _,
    } = rs;
    out.push_str("\n[[virtual_server.real_server]]\n");
    line(out, "ip", string(&ip.to_string()));
    // Port 0 (a fwmark service's default) cannot be written; it is what
    // leaving `port` out means there.
    if *port != 0 {
        line(out, "port", port);
    }
    line(out, "weight", weight);
    if *upper_threshold != 0 {
        line(out, "uthreshold", upper_threshold);
    }
    if *lower_threshold != 0 {
        line(out, "lthreshold", lower_threshold);
    }
    lvs_scripts(out, ("notify_up", "notify_down"), notify);
    health::real_server(out, *inhibit_on_failure, checks);
}

/// A virtual server's quorum scripts or a real server's notify scripts, when set.
fn lvs_scripts(out: &mut String, (up_key, down_key): (&str, &str), scripts: &LvsScripts) {
    for (key, script) in [(up_key, scripts.up()), (down_key, scripts.down())] {
        if let Some(script) = script {
            line(out, key, string(script));
        }
    }
}

/// An instance's `key = [{ name, weight, reverse }, ...]` line (`track_file`,
/// `track_process`), written only when there are entries.
pub(crate) fn weighted_entries<'a>(
    out: &mut String,
    key: &str,
    entries: impl Iterator<Item = (&'a str, i32, bool)>,
    string: impl Fn(&str) -> String,
) {
    let entries: Vec<String> = entries
        .map(|(name, weight, reverse)| {
            format!(
                "{{ name = {}, weight = {weight}, reverse = {reverse} }}",
                string(name)
            )
        })
        .collect();
    if !entries.is_empty() {
        out.push_str(&format!("{key} = [{}]\n", entries.join(", ")));
    }
}

/// `units / per_second` seconds as a TOML integer or exact decimal.
fn decimal(units: u32, per_second: u32) -> String {
    let whole = units / per_second;
    let fraction = units % per_second;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = per_second.ilog10() as usize;
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A TOML basic string.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(100, 100), "1");
        assert_eq!(decimal(5, 100), "0.05");
        assert_eq!(decimal(50, 100), "0.5");
        assert_eq!(decimal(4095, 100), "40.95");
        assert_eq!(decimal(1, 1000), "0.001");
        assert_eq!(decimal(6500, 1000), "6.5");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(string("x\u{1}"), "\"x\\u0001\"");
    }
}
