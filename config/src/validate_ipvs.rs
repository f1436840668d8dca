//! Validation of `[[virtual_server]]` tables: keepalived's keywords and
//! values, the kernel's ranges (ports, weights, thresholds, fwmarks) and the
//! cross-field rules (ip + port or fwmark, one address family, `ops` only
//! for UDP, no duplicates), each reported at the place it was written.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::draft::{Located, RealServerDraft, ScriptsDraft, VirtualServerDraft, VirtualServerSlot};
use crate::error::{ConfigError, Loc};
use crate::model::{
    AddressFamily, LvsMethod, LvsPersistence, LvsProtocol, LvsScheduler, RealServer,
    SchedulerFlags, VirtualServer, VirtualServerAddress,
};
use crate::validate::{in_range, push, whole_seconds, whole_units};

/// keepalived's default weight of a real server.
const DEFAULT_WEIGHT: u32 = 1;
/// Highest weight keepalived accepts.
const MAX_WEIGHT: i64 = 65535;

/// Validates every virtual server not yet validated and refuses duplicates, in file order;
/// the result is complete only when no error was added (nor by the front-end, for the
/// servers it validated).
pub(crate) fn virtual_servers(
    errors: &mut Vec<ConfigError>,
    slots: Vec<VirtualServerSlot>,
    scripts: &ScriptsDraft,
) -> Vec<VirtualServer> {
    let mut seen: HashMap<(VirtualServerAddress, AddressFamily, Option<LvsProtocol>), Loc> =
        HashMap::new();
    // Sized once: the model lives as long as the configuration runs.
    let mut result = Vec::with_capacity(slots.len());
    for slot in slots {
        let vs = match slot {
            VirtualServerSlot::Draft(draft) => virtual_server(errors, &draft, scripts),
            VirtualServerSlot::Checked(vs) => Some(vs),
            VirtualServerSlot::Invalid => None,
        };
        let Some(vs) = vs else { continue };
        let protocol = match vs.address {
            VirtualServerAddress::Socket { .. } => Some(vs.protocol),
            VirtualServerAddress::Fwmark(_) => None,
        };
        let key = (vs.address, vs.family, protocol);
        if let Some(first) = seen.get(&key) {
            push(
                errors,
                &vs.loc,
                format!(
                    "{} is already defined at {first}; merge the two into one [[virtual_server]]",
                    describe(&vs.address, protocol)
                ),
            );
        } else {
            seen.insert(key, vs.loc);
        }
        result.push(vs);
    }
    result
}

/// Validates `draft` where it was read, if nothing later in the file can change what it
/// means (see [`VirtualServerSlot`]); errors go to `errors`.
pub(crate) fn validate_early(
    errors: &mut Vec<ConfigError>,
    draft: VirtualServerDraft,
) -> VirtualServerSlot {
    if draft.runs_scripts() {
        return VirtualServerSlot::Draft(Box::new(draft));
    }
    match virtual_server(errors, &draft, &ScriptsDraft::default()) {
        Some(vs) => VirtualServerSlot::Checked(vs),
        None => VirtualServerSlot::Invalid,
    }
}

/// "virtual_server TCP 192.0.2.10:80" or "virtual_server fwmark 42".
fn describe(address: &VirtualServerAddress, protocol: Option<LvsProtocol>) -> String {
    let protocol = match protocol {
        Some(LvsProtocol::Tcp) | None => "TCP",
        Some(LvsProtocol::Udp) => "UDP",
        Some(LvsProtocol::Sctp) => "SCTP",
    };
    match address {
        VirtualServerAddress::Socket {
            ip: IpAddr::V6(v6),
            port,
        } => format!("virtual_server {protocol} [{v6}]:{port}"),
        VirtualServerAddress::Socket { ip, port } => {
            format!("virtual_server {protocol} {ip}:{port}")
        }
        VirtualServerAddress::Fwmark(mark) => format!("virtual_server fwmark {mark}"),
    }
}

fn parse_ip(errors: &mut Vec<ConfigError>, key: &str, text: &Located<String>) -> Option<IpAddr> {
    match text.value.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            push(
                errors,
                &text.loc,
                format!(
                    "{key} = {:?}: not an IP address (write it without a prefix length, e.g. \"192.0.2.10\")",
                    text.value
                ),
            );
            None
        }
    }
}

fn port(errors: &mut Vec<ConfigError>, value: &Located<i64>) -> Option<u16> {
    in_range(errors, "port", value, 1..=65535, "must be 1..=65535").map(|p| p as u16)
}

/// Validates one virtual server; `None` if anything about it is wrong.
fn virtual_server(
    errors: &mut Vec<ConfigError>,
    d: &VirtualServerDraft,
    scripts: &ScriptsDraft,
) -> Option<VirtualServer> {
    let errors_before = errors.len();

    let address = match (&d.ip, &d.fwmark) {
        (Some(_), Some(mark)) => {
            push(
                errors,
                &mark.loc,
                format!(
                    "fwmark = {}: a virtual_server is either ip + port or fwmark, not both; remove one",
                    mark.value
                ),
            );
            None
        }
        (None, None) => {
            if !d.present.contains(&"ip") && !d.present.contains(&"fwmark") {
                push(
                    errors,
                    &d.loc,
                    "this virtual_server has neither `ip` + `port` nor `fwmark`; add e.g. `ip = \"192.0.2.10\"` and `port = 80`, or `fwmark = 1`",
                );
            }
            None
        }
        (Some(ip), None) => {
            let ip = parse_ip(errors, "ip", ip);
            let port = match &d.port {
                Some(p) => port(errors, p),
                None => {
                    if !d.present.contains(&"port") {
                        push(
                            errors,
                            &d.loc,
                            "this virtual_server has `ip` but no `port`; add e.g. `port = 80` (or use `fwmark` instead of ip + port)",
                        );
                    }
                    None
                }
            };
            Some(VirtualServerAddress::Socket {
                ip: ip?,
                port: port?,
            })
        }
        (None, Some(mark)) => {
            if let Some(p) = &d.port {
                push(
                    errors,
                    &p.loc,
                    format!(
                        "port = {}: a fwmark virtual_server has no port; remove it",
                        p.value
                    ),
                );
            }
            in_range(
                errors,
                "fwmark",
                mark,
                1..=i64::from(u32::MAX),
                "must be 1..=4294967295 (the netfilter mark of the packets)",
            )
            .map(|m| VirtualServerAddress::Fwmark(m as u32))
        }
    };

    let protocol = match &d.protocol {
        None => Some(LvsProtocol::Tcp),
        Some(p) => match p.value.as_str() {
            "TCP" => Some(LvsProtocol::Tcp),
            "UDP" => Some(LvsProtocol::Udp),
            "SCTP" => Some(LvsProtocol::Sctp),
            other => {
                push(
                    errors,
                    &p.loc,
                    format!(
                        "protocol = {other:?}: must be \"TCP\", \"UDP\" or \"SCTP\" (upper case, as keepalived writes it)"
                    ),
                );
                None
            }
        },
    };

    let scheduler =
        one_of_synonyms(errors, &d.scheduler).map_or(Some(LvsScheduler::Wlc), |(key, value)| {
            let scheduler = LvsScheduler::from_name(&value.value);
            if scheduler.is_none() {
                let names: Vec<&str> = LvsScheduler::ALL.iter().map(|s| s.name()).collect();
                push(
                    errors,
                    &value.loc,
                    format!(
                        "{key} = {:?}: unknown scheduler; use one of {}",
                        value.value,
                        names.join(", ")
                    ),
                );
            }
            scheduler
        });

    let scheduler_flags = scheduler_flags(errors, &d.extras().scheduler_flags, scheduler);

    let method = one_of_synonyms(errors, &d.method).map_or(Some(LvsMethod::Nat), |(key, value)| {
        match value.value.as_str() {
            "DR" => Some(LvsMethod::DirectRouting),
            "NAT" => Some(LvsMethod::Nat),
            "TUN" => Some(LvsMethod::Tunnel),
            other => {
                push(
                    errors,
                    &value.loc,
                    format!(
                        "{key} = {other:?}: must be \"DR\" (direct routing), \"NAT\" or \"TUN\" (tunnelling)"
                    ),
                );
                None
            }
        }
    });

    // The family: the virtual address's; for a fwmark, the real servers'.
    let family = match address {
        Some(VirtualServerAddress::Socket { ip, .. }) => Some(AddressFamily::of(&ip)),
        _ => d
            .real_servers
            .iter()
            .find_map(|rs| rs.ip.as_ref()?.value.parse::<IpAddr>().ok())
            .map(|ip| AddressFamily::of(&ip))
            .or(Some(AddressFamily::Ipv4)),
    };

    let timeout = whole_seconds(
        errors,
        "persistence_timeout",
        d.persistence_timeout.as_ref(),
        1,
        u32::MAX.into(),
    );
    let granularity = match (
        &d.extras().persistence_granularity,
        &d.persistence_timeout,
        family,
    ) {
        (Some(g), None, _) => {
            push(
                errors,
                &g.loc,
                format!(
                    "persistence_granularity = {:?}: only means something with persistence_timeout; set persistence_timeout or remove this",
                    g.value
                ),
            );
            None
        }
        (Some(g), Some(_), Some(family)) => granularity(errors, g, family),
        (None, _, Some(family)) => Some(family.max_prefix_len()),
        _ => None,
    };
    let persistence = match (timeout, granularity) {
        (Some(t), Some(len)) => Some(LvsPersistence {
            timeout_secs: t as u32,
            granularity_prefix_len: len,
        }),
        _ => None,
    };

    let one_packet = d.extras().ops.as_ref().is_some_and(|ops| ops.value);
    if let (Some(ops), Some(p)) = (&d.extras().ops, protocol) {
        if ops.value && p != LvsProtocol::Udp {
            push(
                errors,
                &ops.loc,
                "ops = true: one-packet scheduling is for UDP services only; set protocol = \"UDP\" or remove ops",
            );
        }
    }

    let delay_loop_millis = d.delay_loop.as_ref().and_then(|value| {
        let millis = whole_units(value.value, 1000.0)
            .filter(|&ms| ms >= 1)
            .and_then(|ms| u32::try_from(ms).ok());
        if millis.is_none() {
            push(
                errors,
                &value.loc,
                format!(
                    "delay_loop = {}: must be more than 0 seconds, in steps of 0.001",
                    value.value
                ),
            );
        }
        millis
    });

    let default_port = match address {
        Some(VirtualServerAddress::Socket { port, .. }) => port,
        _ => 0,
    };
    let mut real_servers: Vec<RealServer> = Vec::with_capacity(d.real_servers.len());
    for rs in &d.real_servers {
        let Some(mut server) = real_server(errors, rs, default_port, family, method) else {
            continue;
        };
        let health = crate::validate_health::real_server(
            errors,
            d,
            rs,
            Some(server.ip),
            Some(server.port),
            scripts,
        );
        server.inhibit_on_failure = health.inhibit_on_failure;
        server.checks = health.checks;
        server.notify = crate::validate_health::lvs_scripts(
            errors,
            ("notify_up", &rs.extras().notify_up),
            ("notify_down", &rs.extras().notify_down),
            scripts,
        );
        // A virtual server has a few real servers: a search of the ones before beats a
        // hash map per virtual server (10,000 of them in a large file).
        let first = real_servers
            .iter()
            .find(|earlier| (earlier.ip, earlier.port) == (server.ip, server.port));
        if let Some(first) = first {
            push(
                errors,
                &rs.loc,
                format!(
                    "real_server {} port {} is already listed at {}; list each real server once",
                    server.ip, server.port, first.loc
                ),
            );
        }
        real_servers.push(server);
    }

    let health = crate::validate_health::virtual_server(errors, d, family, method, default_port);
    let quorum_scripts = crate::validate_health::lvs_scripts(
        errors,
        ("quorum_up", &d.extras().quorum_up),
        ("quorum_down", &d.extras().quorum_down),
        scripts,
    );

    if errors.len() > errors_before {
        return None;
    }
    Some(VirtualServer {
        address: address?,
        family: family?,
        protocol: protocol?,
        scheduler: scheduler?,
        method: method?,
        persistence,
        one_packet,
        scheduler_flags,
        delay_loop_millis,
        quorum: health.quorum,
        hysteresis: health.hysteresis,
        sorry_server: health.sorry_server,
        omega: health.omega,
        quorum_scripts,
        real_servers,
        loc: d.loc,
    })
}

/// The scheduler flags written (`mh-port`, `flag-1`, ...): each a known name, and a
/// scheduler's own names (`sh-*`, `mh-*`) only with that scheduler. keepalived logs
/// "only applies to sh scheduler - ignoring" and runs without the flag; haldir refuses
/// the file, as for any value it would otherwise not apply.
fn scheduler_flags(
    errors: &mut Vec<ConfigError>,
    written: &[Located<String>],
    scheduler: Option<LvsScheduler>,
) -> SchedulerFlags {
    let mut flags = SchedulerFlags::NONE;
    for flag in written {
        match SchedulerFlags::parse_name(&flag.value) {
            None => {
                let names: Vec<&str> = SchedulerFlags::all_names().collect();
                push(
                    errors,
                    &flag.loc,
                    format!(
                        "scheduler flag {:?}: unknown; use one of {}",
                        flag.value,
                        names.join(", ")
                    ),
                );
            }
            Some((_, Some(only))) if scheduler.is_some_and(|s| s != only) => push(
                errors,
                &flag.loc,
                format!(
                    "scheduler flag {:?} is a flag of the {} scheduler, and this virtual server's scheduler is {}; set lb_algo {} or remove the flag",
                    flag.value,
                    only.name(),
                    scheduler.map_or("?", LvsScheduler::name),
                    only.name()
                ),
            ),
            Some((n, _)) => flags = flags.with(n),
        }
    }
    flags
}

/// The one value of a pair of synonym keys; a second one is an error.
fn one_of_synonyms<'a>(
    errors: &mut Vec<ConfigError>,
    values: &'a [(&'static str, Located<String>)],
) -> Option<(&'static str, &'a Located<String>)> {
    let (first_key, first) = values.first()?;
    for (key, value) in &values[1..] {
        push(
            errors,
            &value.loc,
            format!(
                "{key} = {:?}: {first_key} at {} already sets this ({key} and {first_key} are synonyms); keep one",
                value.value, first.loc
            ),
        );
    }
    Some((first_key, first))
}

/// `persistence_granularity`: an IPv4 netmask ("255.255.255.0") or a prefix
/// length ("24", "/24"); IPv6 takes a prefix length 1..=128 only.
fn granularity(
    errors: &mut Vec<ConfigError>,
    value: &Located<String>,
    family: AddressFamily,
) -> Option<u8> {
    let text = value.value.trim_start_matches('/');
    let prefix = match (family, text.parse::<Ipv4Addr>()) {
        (AddressFamily::Ipv4, Ok(mask)) => {
            let bits = u32::from(mask);
            // A netmask is contiguous ones from the top.
            (bits.leading_ones() + bits.trailing_zeros() == 32 || bits == 0)
                .then(|| bits.leading_ones() as u8)
        }
        _ => text
            .parse::<u8>()
            .ok()
            .filter(|&len| len <= family.max_prefix_len())
            .filter(|&len| family == AddressFamily::Ipv4 || len >= 1),
    };
    if prefix.is_none() {
        let hint = match family {
            AddressFamily::Ipv4 => {
                "an IPv4 netmask such as \"255.255.255.0\" or a prefix length 0..=32"
            }
            AddressFamily::Ipv6 => "an IPv6 prefix length 1..=128, such as \"64\"",
        };
        push(
            errors,
            &value.loc,
            format!(
                "persistence_granularity = {:?}: must be {hint}",
                value.value
            ),
        );
    }
    prefix
}

fn real_server(
    errors: &mut Vec<ConfigError>,
    d: &RealServerDraft,
    default_port: u16,
    family: Option<AddressFamily>,
    method: Option<LvsMethod>,
) -> Option<RealServer> {
    let errors_before = errors.len();
    let ip = match &d.ip {
        Some(text) => parse_ip(errors, "ip", text),
        None => {
            if !d.present.contains(&"ip") {
                push(
                    errors,
                    &d.loc,
                    "this real_server is missing `ip`; add e.g. `ip = \"10.0.0.1\"`",
                );
            }
            None
        }
    };
    if let (Some(ip), Some(family), Some(text)) = (ip, family, &d.ip) {
        // The kernel forwards to a real server of the other family only by
        // tunnelling (ip_vs_genl_set_cmd accepts IP_VS_CONN_F_TUNNEL only).
        if AddressFamily::of(&ip) != family && method != Some(LvsMethod::Tunnel) {
            push(
                errors,
                &text.loc,
                format!(
                    "ip = {:?}: is {} but the virtual server is {family}; only lb_kind = \"TUN\" can mix families",
                    text.value,
                    AddressFamily::of(&ip)
                ),
            );
        }
    }
    let port = match &d.port {
        Some(p) => port(errors, p),
        None => Some(default_port),
    };
    let weight = match &d.weight {
        Some(w) => in_range(
            errors,
            "weight",
            w,
            0..=MAX_WEIGHT,
            "must be 0..=65535 (0 takes no new connections)",
        )
        .map(|w| w as u32),
        None => Some(DEFAULT_WEIGHT),
    };
    let threshold =
        |errors: &mut Vec<ConfigError>, key: &str, value: &Option<Located<i64>>| match value {
            Some(v) => in_range(
                errors,
                key,
                v,
                0..=i64::from(u32::MAX),
                "must be 0..=4294967295 (0 = no threshold)",
            )
            .map(|t| t as u32),
            None => Some(0),
        };
    let upper_threshold = threshold(errors, "uthreshold", &d.extras().uthreshold);
    let lower_threshold = threshold(errors, "lthreshold", &d.extras().lthreshold);
    if let (Some(upper), Some(lower), Some(lower_at)) =
        (upper_threshold, lower_threshold, &d.extras().lthreshold)
    {
        // ip_vs_add_dest / ip_vs_edit_dest: l_threshold > u_threshold is ERANGE.
        if lower > upper {
            push(
                errors,
                &lower_at.loc,
                format!(
                    "lthreshold = {lower}: is above uthreshold = {upper}; the kernel refuses a lower threshold above the upper one, so lower it or raise uthreshold"
                ),
            );
        }
    }
    if errors.len() > errors_before {
        return None;
    }
    Some(RealServer {
        ip: ip?,
        port: port?,
        weight: weight?,
        upper_threshold: upper_threshold?,
        lower_threshold: lower_threshold?,
        // Set by the caller (validate_health::real_server).
        inhibit_on_failure: false,
        checks: Vec::new(),
        notify: Default::default(),
        loc: d.loc,
    })
}
