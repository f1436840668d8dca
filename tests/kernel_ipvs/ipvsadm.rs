//! Reads the kernel's IPVS table the way an operator does: through `ipvsadm`'s listings,
//! parsed into haldir's own [`Table`] so a test can `assert_eq!` it with the configured one.
//! Independent of haldir's netlink code on purpose: it is the second opinion.
//!
//! Sources (formats of ipvsadm 1.31, as captured in the VM):
//! - `ipvsadm -Ln`: services (`TCP  10.1.0.1:443 wlc persistent 300 mask 255.255.255.0`,
//!   `UDP  10.1.0.1:53 sh (sh-fallback,sh-port) ops`, `FWM  6 IPv6 mh (mh-port)`) and their
//!   destinations (`-> 10.1.0.2:80  Route  3  0  0`);
//! - `ipvsadm -Ln --thresholds`: `-> 10.1.0.2:80  100  10  0  0` (upper, lower);
//! - `ipvsadm -Ln --persistent-conn`: `-> 10.1.0.2:80  3  0  0  0` (weight, persistent
//!   connections): its weights must agree with `-Ln`;
//! - `ipvsadm -Sn`: the tunnel type, port and checksum options of tunnelled destinations
//!   (`--tun-type gue --tun-port 6080 --tun-nocsum`), which `-Ln` does not show.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use haldir_ipvs::model::{
    AddressFamily, DestKey, Destination, Forwarding, Persistence, Protocol, Service, ServiceFlags,
    ServiceKey, Table, Tunnel, TunnelEncapsulation, TunnelFlags,
};

/// Runs `ipvsadm ARGS` in network namespace `ns` (None: the current one) and returns stdout.
pub fn run(ns: Option<&str>, args: &[&str]) -> String {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "ipvsadm"]);
            c
        }
        None => Command::new("ipvsadm"),
    };
    let out = cmd.args(args).output().expect("run ipvsadm");
    assert!(
        out.status.success(),
        "ipvsadm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The whole table as `ipvsadm` shows it in namespace `ns`. The four listings are four
/// reads: while a health checker changes the table, they can disagree. They are taken
/// again (up to 50 times, 100 ms apart) until `-Ln` shows the same services and
/// destinations before and after the other three.
pub fn read_table(ns: Option<&str>) -> Table {
    let mut tries = 0;
    loop {
        tries += 1;
        let list = run(ns, &["-Ln"]);
        let thresholds = run(ns, &["-Ln", "--thresholds"]);
        let persistent = run(ns, &["-Ln", "--persistent-conn"]);
        let save = run(ns, &["-Sn"]);
        let steady = shape(&list) == shape(&run(ns, &["-Ln"]));
        if steady || tries == 50 {
            return parse(&list, &thresholds, &persistent, &save).unwrap_or_else(|e| {
                panic!("{e} (the table steady during the reads: {steady})\n-Ln:\n{list}\n--thresholds:\n{thresholds}\n-Sn:\n{save}")
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `ipvsadm -Ln` without its connection counters: the services, and each destination's
/// address, forwarding and weight.
fn shape(list: &str) -> Vec<String> {
    list.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.first() {
                Some(&"->") => fields.iter().take(4).copied().collect::<Vec<_>>().join(" "),
                _ => fields.join(" "),
            }
        })
        .collect()
}

/// Combines the four listings into one table.
pub fn parse(list: &str, thresholds: &str, persistent: &str, save: &str) -> Result<Table, String> {
    let mut table = Table::new();
    for (key, service, dests) in entries(list, parse_service, |fields| {
        let forwarding = match *fields.get(1).ok_or("no forwarding column")? {
            "Route" => Forwarding::DirectRoute,
            "Masq" => Forwarding::Masquerade,
            "Tunnel" => Forwarding::Tunnel(Tunnel::default()),
            "Local" => Forwarding::LocalNode,
            "Bypass" => Forwarding::Bypass,
            other => return Err(format!("unknown forwarding {other:?}")),
        };
        let weight = number(fields.get(2))?;
        Ok(Destination::new(forwarding, weight))
    })? {
        table.insert_service(key, service);
        for (dest_key, dest) in dests {
            table.insert_dest(&key, dest_key, dest);
        }
    }
    // Thresholds: (upper, lower) per destination.
    for (key, _, dests) in entries(thresholds, parse_service, |fields| {
        Ok((number(fields.get(1))?, number(fields.get(2))?))
    })? {
        let (_, table_dests) = table
            .services
            .get_mut(&key)
            .ok_or(format!("--thresholds lists {key} that -Ln does not"))?;
        for (dest_key, (upper, lower)) in dests {
            let dest = table_dests
                .get_mut(&dest_key)
                .ok_or(format!("--thresholds lists {dest_key} that -Ln does not"))?;
            dest.upper_threshold = upper;
            dest.lower_threshold = lower;
        }
    }
    // --persistent-conn: the weights must agree.
    for (key, _, dests) in entries(persistent, parse_service, |fields| {
        number::<u32>(fields.get(1))
    })? {
        let (_, table_dests) = &table.services[&key];
        for (dest_key, weight) in dests {
            let have = table_dests[&dest_key].weight;
            if have != weight {
                return Err(format!(
                    "{key} -> {dest_key}: weight {have} in -Ln but {weight} in --persistent-conn"
                ));
            }
        }
    }
    // -Sn: tunnel settings.
    for line in save.lines().filter(|l| l.starts_with("-a ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let key = save_service_key(&words)?;
        let at = words
            .iter()
            .position(|w| *w == "-r")
            .ok_or("-a without -r")?;
        let dest_key = parse_dest_key(words.get(at + 1).ok_or("-r without address")?)?;
        let Some(dest) = table
            .services
            .get_mut(&key)
            .and_then(|(_, dests)| dests.get_mut(&dest_key))
        else {
            return Err(format!("-Sn lists {key} -> {dest_key} that -Ln does not"));
        };
        if let Forwarding::Tunnel(tunnel) = &mut dest.forwarding {
            let option = |name: &str| {
                words
                    .iter()
                    .position(|w| *w == name)
                    .and_then(|i| words.get(i + 1))
                    .copied()
            };
            tunnel.encapsulation = match option("--tun-type") {
                None | Some("ipip") => TunnelEncapsulation::Ipip,
                Some("gue") => TunnelEncapsulation::Gue,
                Some("gre") => TunnelEncapsulation::Gre,
                Some(other) => return Err(format!("unknown tunnel type {other}")),
            };
            tunnel.port = match option("--tun-port") {
                Some(port) => port
                    .parse()
                    .map_err(|_| format!("bad tunnel port {port}"))?,
                None => 0,
            };
            tunnel.flags = if words.contains(&"--tun-csum") {
                TunnelFlags::CHECKSUM
            } else if words.contains(&"--tun-remcsum") {
                TunnelFlags::REMOTE_CHECKSUM
            } else {
                TunnelFlags::default()
            };
        }
    }
    Ok(table)
}

type Entry<D> = (ServiceKey, Service, Vec<(DestKey, D)>);

/// Splits a listing into services, each with its destination lines parsed by `dest`
/// (which gets the whitespace-split fields, the first being the address).
fn entries<D>(
    listing: &str,
    service: fn(&str) -> Result<(ServiceKey, Service), String>,
    dest: impl Fn(&[&str]) -> Result<D, String>,
) -> Result<Vec<Entry<D>>, String> {
    let mut out: Vec<Entry<D>> = Vec::new();
    for line in listing.lines() {
        if line.starts_with("IP Virtual Server") || line.starts_with("Prot ") {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("-> RemoteAddress") {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("->") {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let key = parse_dest_key(fields.first().ok_or("empty destination line")?)?;
            let value = dest(&fields).map_err(|e| format!("{line:?}: {e}"))?;
            out.last_mut()
                .ok_or(format!("destination before any service: {line:?}"))?
                .2
                .push((key, value));
        } else {
            let (key, svc) = service(line).map_err(|e| format!("{line:?}: {e}"))?;
            out.push((key, svc, Vec::new()));
        }
    }
    Ok(out)
}

/// One `-Ln` service line.
fn parse_service(line: &str) -> Result<(ServiceKey, Service), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut at = 2;
    let key = match words.first().copied() {
        Some("FWM") => {
            let mark = number(words.get(1))?;
            let family = if words.get(2) == Some(&"IPv6") {
                at = 3;
                AddressFamily::Ipv6
            } else {
                AddressFamily::Ipv4
            };
            ServiceKey::Fwmark { family, mark }
        }
        Some(proto) => {
            let protocol = match proto {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => return Err(format!("unknown protocol {other}")),
            };
            let dest = parse_dest_key(words.get(1).ok_or("no address")?)?;
            ServiceKey::Address {
                protocol,
                addr: dest.addr,
                port: dest.port,
            }
        }
        None => return Err("empty service line".into()),
    };
    let mut service = Service::new(*words.get(at).ok_or("no scheduler")?);
    at += 1;
    while let Some(word) = words.get(at) {
        match *word {
            "ops" => service.flags = service.flags | ServiceFlags::ONE_PACKET,
            "persistent" => {
                let timeout_secs = number(words.get(at + 1))?;
                service.persistence = Some(Persistence {
                    timeout_secs,
                    netmask_prefix_len: key.family().max_prefix_len(),
                });
                at += 1;
            }
            "mask" => {
                let mask = words.get(at + 1).ok_or("mask without value")?;
                let prefix = match mask.parse::<Ipv4Addr>() {
                    Ok(v4) => u32::from(v4).leading_ones() as u8,
                    Err(_) => mask.parse().map_err(|_| format!("bad mask {mask}"))?,
                };
                service
                    .persistence
                    .as_mut()
                    .ok_or("mask without persistent")?
                    .netmask_prefix_len = prefix;
                at += 1;
            }
            "pe" => {
                service.persistence_engine =
                    Some(words.get(at + 1).ok_or("pe without name")?.to_string());
                at += 1;
            }
            flags if flags.starts_with('(') => {
                for flag in flags.trim_matches(|c| c == '(' || c == ')').split(',') {
                    let bit = match flag.rsplit('-').next() {
                        Some("fallback") | Some("1") => ServiceFlags::SCHED1,
                        Some("port") | Some("2") => ServiceFlags::SCHED2,
                        Some("3") => ServiceFlags::SCHED3,
                        _ => return Err(format!("unknown scheduler flag {flag}")),
                    };
                    service.flags = service.flags | bit;
                }
            }
            other => return Err(format!("unknown service word {other:?}")),
        }
        at += 1;
    }
    Ok((key, service))
}

/// The service key of a `-Sn` line: `-a -t ADDR:PORT ...`, `-a -f 6 -6 ...`.
fn save_service_key(words: &[&str]) -> Result<ServiceKey, String> {
    let value = words.get(2).ok_or("short -Sn line")?;
    let protocol = match words.get(1).copied() {
        Some("-f") => {
            let family = if words.contains(&"-6") {
                AddressFamily::Ipv6
            } else {
                AddressFamily::Ipv4
            };
            return Ok(ServiceKey::Fwmark {
                family,
                mark: value.parse().map_err(|_| format!("bad mark {value}"))?,
            });
        }
        Some("-t") => Protocol::Tcp,
        Some("-u") => Protocol::Udp,
        Some("--sctp-service") => Protocol::Sctp,
        other => return Err(format!("unknown service option {other:?}")),
    };
    let dest = parse_dest_key(value)?;
    Ok(ServiceKey::Address {
        protocol,
        addr: dest.addr,
        port: dest.port,
    })
}

/// `10.1.0.2:80` or `[2001:db8::2]:80`.
fn parse_dest_key(text: &str) -> Result<DestKey, String> {
    let (addr, port) = text
        .rsplit_once(':')
        .ok_or(format!("no port in {text:?}"))?;
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("bad address in {text:?}"))?;
    let port = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    Ok(DestKey::new(addr, port))
}

fn number<T: std::str::FromStr>(word: Option<&&str>) -> Result<T, String> {
    let word = word.ok_or("missing number")?;
    word.parse().map_err(|_| format!("not a number: {word:?}"))
}
