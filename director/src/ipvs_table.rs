//! From the configuration's `virtual_server`s to IPVS table entries:
//! `haldir_config::VirtualServer` → `haldir_ipvs::model` service keys, services and
//! destinations. Plain conversion, no logic beyond keepalived's meaning of the keywords;
//! which real servers are in the table, and with which weight, is the policy's
//! ([`crate::ipvs_policy`]).

use haldir_config::{
    AddressFamily as ConfigFamily, LvsMethod, LvsProtocol, RealServer, VirtualServer,
    VirtualServerAddress,
};
use haldir_ipvs::model::{
    AddressFamily, DestKey, Destination, Forwarding, Persistence, Protocol, Service, ServiceFlags,
    ServiceKey, Tunnel,
};

/// The kernel key of a virtual server.
pub fn service_key(vs: &VirtualServer) -> ServiceKey {
    match vs.address {
        VirtualServerAddress::Socket { ip, port } => ServiceKey::Address {
            protocol: match vs.protocol {
                LvsProtocol::Tcp => Protocol::Tcp,
                LvsProtocol::Udp => Protocol::Udp,
                LvsProtocol::Sctp => Protocol::Sctp,
            },
            addr: ip,
            port,
        },
        VirtualServerAddress::Fwmark(mark) => ServiceKey::Fwmark {
            family: match vs.family {
                ConfigFamily::Ipv4 => AddressFamily::Ipv4,
                ConfigFamily::Ipv6 => AddressFamily::Ipv6,
            },
            mark,
        },
    }
}

/// The service settings of a virtual server: scheduler, `ops` and the scheduler flags as
/// `IP_VS_SVC_F_*`, persistence.
pub fn service(vs: &VirtualServer) -> Service {
    Service {
        scheduler: vs.scheduler.name().to_owned(),
        flags: service_flags(vs),
        persistence: vs.persistence.map(|p| Persistence {
            timeout_secs: p.timeout_secs,
            netmask_prefix_len: p.granularity_prefix_len,
        }),
        persistence_engine: None,
    }
}

/// `ops` and the scheduler flags as `IP_VS_SVC_F_*` bits.
fn service_flags(vs: &VirtualServer) -> ServiceFlags {
    let mut flags = ServiceFlags::NONE;
    if vs.one_packet {
        flags = flags | ServiceFlags::ONE_PACKET;
    }
    for (n, bit) in [
        (1, ServiceFlags::SCHED1),
        (2, ServiceFlags::SCHED2),
        (3, ServiceFlags::SCHED3),
    ] {
        if vs.scheduler_flags.contains(n) {
            flags = flags | bit;
        }
    }
    flags
}

/// The kernel key and settings of one real server of `vs`.
pub fn destination(vs: &VirtualServer, rs: &RealServer) -> (DestKey, Destination) {
    let forwarding = match vs.method {
        LvsMethod::DirectRouting => Forwarding::DirectRoute,
        LvsMethod::Nat => Forwarding::Masquerade,
        LvsMethod::Tunnel => Forwarding::Tunnel(Tunnel::default()),
    };
    (
        DestKey::new(rs.ip, rs.port),
        Destination {
            forwarding,
            weight: rs.weight,
            upper_threshold: rs.upper_threshold,
            lower_threshold: rs.lower_threshold,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use haldir_ipvs::model::Table;

    use super::*;
    use crate::ipvs_policy::desired_table;

    const CONFIG: &str = r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_algo = "wrr"
lb_kind = "DR"
persistence_timeout = 300
persistence_granularity = "255.255.255.0"
[[virtual_server.real_server]]
ip = "10.0.0.11"
weight = 3
uthreshold = 100
lthreshold = 10
[[virtual_server.real_server]]
ip = "10.0.0.12"

[[virtual_server]]
fwmark = 7
protocol = "UDP"
lb_algo = "sh"
lb_kind = "TUN"
ops = true
[[virtual_server.real_server]]
ip = "2001:db8::11"
"#;

    fn servers() -> Vec<VirtualServer> {
        haldir_config::parse_toml(CONFIG, "test.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .virtual_servers
    }

    /// The table with the real servers for which `is_up` holds, each with its configured
    /// weight (no quorum or sorry server is configured here).
    fn table(is_up: &dyn Fn(&RealServer) -> bool) -> Table {
        desired_table(
            &servers(),
            &|_, _, rs| (is_up(rs), rs.weight),
            &mut HashMap::new(),
        )
    }

    #[test]
    fn virtual_servers_become_services_with_their_real_servers() {
        let table = table(&|_| true);
        assert_eq!(table.service_count(), 2);
        assert_eq!(table.dest_count(), 3);

        let web = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port: 80,
        };
        let (service, dests) = &table.services[&web];
        assert_eq!(service.scheduler, "wrr");
        assert_eq!(
            service.persistence,
            Some(Persistence {
                timeout_secs: 300,
                netmask_prefix_len: 24
            })
        );
        let first = &dests[&DestKey::new("10.0.0.11".parse().unwrap(), 80)];
        assert_eq!(
            *first,
            Destination {
                forwarding: Forwarding::DirectRoute,
                weight: 3,
                upper_threshold: 100,
                lower_threshold: 10,
            }
        );

        // A fwmark service takes its family from its real servers.
        let marked = ServiceKey::Fwmark {
            family: AddressFamily::Ipv6,
            mark: 7,
        };
        let (service, dests) = &table.services[&marked];
        assert_eq!(service.flags, ServiceFlags::ONE_PACKET);
        assert!(dests
            .values()
            .all(|d| matches!(d.forwarding, Forwarding::Tunnel(_))));
    }

    #[test]
    fn real_servers_that_are_down_are_left_out() {
        let table = table(&|rs| rs.ip.to_string() != "10.0.0.12");
        assert_eq!(
            table.service_count(),
            2,
            "a service stays even with no real server up"
        );
        assert_eq!(table.dest_count(), 2);
    }

    #[test]
    fn scheduler_flags_become_the_kernels_sched_bits_beside_ops() {
        let model = haldir_config::parse_toml(
            "[[virtual_server]]\nip = \"192.0.2.10\"\nport = 53\nprotocol = \"UDP\"\nops = true\nlb_algo = \"mh\"\nscheduler_flags = [\"mh-port\", \"mh-fallback\"]\n",
            "t.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let flags = service(&model.virtual_servers[0]).flags;
        assert_eq!(
            flags,
            ServiceFlags::ONE_PACKET | ServiceFlags::SCHED1 | ServiceFlags::SCHED2
        );
        assert!(!flags.contains(ServiceFlags::SCHED3));
    }
}
