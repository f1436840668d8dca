//! Byte-vector tests, both ways: each vector is parsed into the expected
//! message and the message is emitted back to the identical bytes.
//!
//! The vectors are built by hand from the uapi layout (`ip_vs.h`) and the
//! order in which `ip_vs_ctl.c` puts attributes (`ip_vs_genl_fill_service`,
//! `ip_vs_genl_fill_dest`, `ip_vs_genl_fill_daemon`, `ip_vs_genl_get_cmd`)
//! or in which libipvs (`ipvsadm`) builds requests. Multi-byte host-order
//! values are little-endian: these tests run on x86_64 / aarch64.

#![cfg(target_endian = "little")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DefaultNla, Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, ParseableParametrized,
    NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlHeader, GenlMessage};

use super::*;

/// Bytes from hex, ignoring whitespace and `|` separators.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Parses `bytes` as the attributes of a `command` message, checks the
/// result, then emits it and checks the bytes.
fn both_ways(command: IpvsCommand, bytes: &[u8], expected: &IpvsMessage) {
    let header = GenlHeader {
        cmd: command.into(),
        version: IPVS_GENL_VERSION,
    };
    let parsed = IpvsMessage::parse_with_param(bytes, header).expect("parses");
    assert_eq!(&parsed, expected);
    assert_eq!(expected.buffer_len(), bytes.len());
    let mut emitted = vec![0xaa; bytes.len()];
    expected.emit(&mut emitted);
    assert_eq!(emitted, bytes, "emitted bytes differ");
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> InetAddr {
    InetAddr::from(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

const SERVICE_TCP_192_0_2_10_80_WRR: &str = "
    54 00 01 00
      06 00 01 00 02 00 00 00
      06 00 02 00 06 00 00 00
      14 00 03 00 c0 00 02 0a 00 00 00 00 00 00 00 00 00 00 00 00
      06 00 04 00 00 50 00 00
      08 00 06 00 77 72 72 00
      0c 00 07 00 00 00 00 00 ff ff ff ff
      08 00 08 00 00 00 00 00
      08 00 09 00 ff ff ff ff";

fn service_tcp_192_0_2_10_80_wrr() -> Vec<ServiceAttribute> {
    vec![
        ServiceAttribute::AddressFamily(AddressFamily::Inet),
        ServiceAttribute::Protocol(Protocol::Tcp),
        ServiceAttribute::Address(v4(192, 0, 2, 10)),
        ServiceAttribute::Port(80),
        ServiceAttribute::SchedName("wrr".into()),
        ServiceAttribute::Flags(FlagsWithMask {
            flags: 0,
            mask: u32::MAX,
        }),
        ServiceAttribute::Timeout(0),
        ServiceAttribute::Netmask(0xffff_ffff),
    ]
}

#[test]
fn new_service_request_has_big_endian_port_and_host_order_flags() {
    both_ways(
        IpvsCommand::NewService,
        &hex(SERVICE_TCP_192_0_2_10_80_WRR),
        &IpvsMessage::new(
            IpvsCommand::NewService,
            vec![IpvsAttribute::Service(service_tcp_192_0_2_10_80_wrr())],
        ),
    );
}

#[test]
fn whole_netlink_message_carries_family_id_and_generic_header() {
    let mut genl = GenlMessage::from_payload(IpvsMessage::new(
        IpvsCommand::NewService,
        vec![IpvsAttribute::Service(service_tcp_192_0_2_10_80_wrr())],
    ));
    genl.set_resolved_family_id(0x25);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 7;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    let expected = hex(&format!(
        "68 00 00 00 25 00 05 00 07 00 00 00 00 00 00 00 | 01 01 00 00 | {SERVICE_TCP_192_0_2_10_80_WRR}"
    ));
    assert_eq!(bytes, expected);

    let parsed = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(&bytes).unwrap();
    let NetlinkPayload::InnerMessage(genl) = parsed.payload else {
        panic!("not an inner message: {parsed:?}");
    };
    assert_eq!(genl.resolved_family_id(), 0x25);
    assert_eq!(genl.payload.command, IpvsCommand::NewService);
}

#[test]
fn fwmark_ipv6_service_with_persistence_engine() {
    // libipvs order: AF, FWMARK, SCHED_NAME, PE_NAME, FLAGS, TIMEOUT, NETMASK.
    // IPv6 netmask 64 is a host-order prefix length: bytes 40 00 00 00.
    let bytes = hex("
        40 00 01 00
          06 00 01 00 0a 00 00 00
          08 00 05 00 2a 00 00 00
          07 00 06 00 73 68 00 00
          08 00 0b 00 73 69 70 00
          0c 00 07 00 01 00 00 00 ff ff ff ff
          08 00 08 00 2c 01 00 00
          08 00 09 00 40 00 00 00");
    both_ways(
        IpvsCommand::NewService,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewService,
            vec![IpvsAttribute::Service(vec![
                ServiceAttribute::AddressFamily(AddressFamily::Inet6),
                ServiceAttribute::Fwmark(42),
                ServiceAttribute::SchedName("sh".into()),
                ServiceAttribute::PeName("sip".into()),
                ServiceAttribute::Flags(FlagsWithMask {
                    flags: 1,
                    mask: u32::MAX,
                }),
                ServiceAttribute::Timeout(300),
                ServiceAttribute::Netmask(0x4000_0000),
            ])],
        ),
    );
}

fn sample_stats() -> Stats {
    Stats {
        conns: 1,
        in_packets: 2,
        out_packets: 3,
        in_bytes: 0x1_0000_0004,
        out_bytes: 5,
        conn_rate: 6,
        in_packet_rate: 7,
        out_packet_rate: 8,
        in_byte_rate: 9,
        out_byte_rate: 10,
    }
}

const STATS32: &str = "
    5c 00 0a 00
      08 00 01 00 01 00 00 00
      08 00 02 00 02 00 00 00
      08 00 03 00 03 00 00 00
      0c 00 04 00 04 00 00 00 01 00 00 00
      0c 00 05 00 05 00 00 00 00 00 00 00
      08 00 06 00 06 00 00 00
      08 00 07 00 07 00 00 00
      08 00 08 00 08 00 00 00
      08 00 09 00 09 00 00 00
      08 00 0a 00 0a 00 00 00";

const STATS64: &str = "
    7c 00 0c 00
      0c 00 01 00 01 00 00 00 00 00 00 00
      0c 00 02 00 02 00 00 00 00 00 00 00
      0c 00 03 00 03 00 00 00 00 00 00 00
      0c 00 04 00 04 00 00 00 01 00 00 00
      0c 00 05 00 05 00 00 00 00 00 00 00
      0c 00 06 00 06 00 00 00 00 00 00 00
      0c 00 07 00 07 00 00 00 00 00 00 00
      0c 00 08 00 08 00 00 00 00 00 00 00
      0c 00 09 00 09 00 00 00 00 00 00 00
      0c 00 0a 00 0a 00 00 00 00 00 00 00";

#[test]
fn service_dump_reply_with_stats_and_stats64() {
    // ip_vs_genl_fill_service: AF, PROTOCOL, ADDR, PORT, SCHED_NAME, FLAGS
    // (HASHED, mask ~0), TIMEOUT, NETMASK, STATS, STATS64.
    let bytes = hex(&format!(
        "2c 01 01 00
          06 00 01 00 02 00 00 00
          06 00 02 00 11 00 00 00
          14 00 03 00 c0 00 02 0b 00 00 00 00 00 00 00 00 00 00 00 00
          06 00 04 00 00 35 00 00
          07 00 06 00 72 72 00 00
          0c 00 07 00 02 00 00 00 ff ff ff ff
          08 00 08 00 00 00 00 00
          08 00 09 00 ff ff ff 00
          {STATS32}
          {STATS64}"
    ));
    both_ways(
        IpvsCommand::NewService,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewService,
            vec![IpvsAttribute::Service(vec![
                ServiceAttribute::AddressFamily(AddressFamily::Inet),
                ServiceAttribute::Protocol(Protocol::Udp),
                ServiceAttribute::Address(v4(192, 0, 2, 11)),
                ServiceAttribute::Port(53),
                ServiceAttribute::SchedName("rr".into()),
                ServiceAttribute::Flags(FlagsWithMask {
                    flags: 2,
                    mask: u32::MAX,
                }),
                ServiceAttribute::Timeout(0),
                ServiceAttribute::Netmask(0xffff_ff00),
                ServiceAttribute::Stats(sample_stats()),
                ServiceAttribute::Stats64(sample_stats()),
            ])],
        ),
    );
}

#[test]
fn destination_dump_reply_in_kernel_order() {
    // ip_vs_genl_fill_dest: ADDR, PORT, FWD_METHOD, WEIGHT, TUN_TYPE, TUN_PORT,
    // TUN_FLAGS, U_THRESH, L_THRESH, ACTIVE, INACT, PERSIST, ADDR_FAMILY, STATS, STATS64.
    let bytes = hex(&format!(
        "50 01 02 00
          14 00 01 00 0a 00 00 05 00 00 00 00 00 00 00 00 00 00 00 00
          06 00 02 00 1f 90 00 00
          08 00 03 00 02 00 00 00
          08 00 04 00 64 00 00 00
          05 00 0d 00 01 00 00 00
          06 00 0e 00 17 c1 00 00
          06 00 0f 00 01 00 00 00
          08 00 05 00 e8 03 00 00
          08 00 06 00 c8 00 00 00
          08 00 07 00 03 00 00 00
          08 00 08 00 04 00 00 00
          08 00 09 00 05 00 00 00
          06 00 0b 00 02 00 00 00
          {STATS32}
          {STATS64}"
    ));
    both_ways(
        IpvsCommand::NewDest,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewDest,
            vec![IpvsAttribute::Dest(vec![
                DestAttribute::Address(v4(10, 0, 0, 5)),
                DestAttribute::Port(8080),
                DestAttribute::ForwardingMethod(ForwardingMethod::Tunnel),
                DestAttribute::Weight(100),
                DestAttribute::TunnelType(TunnelType::Gue),
                DestAttribute::TunnelPort(6081),
                DestAttribute::TunnelFlags(1),
                DestAttribute::UpperThreshold(1000),
                DestAttribute::LowerThreshold(200),
                DestAttribute::ActiveConns(3),
                DestAttribute::InactiveConns(4),
                DestAttribute::PersistentConns(5),
                DestAttribute::AddressFamily(AddressFamily::Inet),
                DestAttribute::Stats(sample_stats()),
                DestAttribute::Stats64(sample_stats()),
            ])],
        ),
    );
}

#[test]
fn new_dest_request_names_its_service_and_direct_routing() {
    // libipvs: the service (identifying attributes only) then the dest.
    let bytes = hex("
        30 00 01 00
          06 00 01 00 02 00 00 00
          06 00 02 00 06 00 00 00
          14 00 03 00 c0 00 02 0a 00 00 00 00 00 00 00 00 00 00 00 00
          06 00 04 00 00 50 00 00
        48 00 02 00
          14 00 01 00 0a 00 00 05 00 00 00 00 00 00 00 00 00 00 00 00
          06 00 02 00 00 50 00 00
          06 00 0b 00 02 00 00 00
          08 00 03 00 03 00 00 00
          08 00 04 00 01 00 00 00
          08 00 05 00 00 00 00 00
          08 00 06 00 00 00 00 00");
    both_ways(
        IpvsCommand::NewDest,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewDest,
            vec![
                IpvsAttribute::Service(vec![
                    ServiceAttribute::AddressFamily(AddressFamily::Inet),
                    ServiceAttribute::Protocol(Protocol::Tcp),
                    ServiceAttribute::Address(v4(192, 0, 2, 10)),
                    ServiceAttribute::Port(80),
                ]),
                IpvsAttribute::Dest(vec![
                    DestAttribute::Address(v4(10, 0, 0, 5)),
                    DestAttribute::Port(80),
                    DestAttribute::AddressFamily(AddressFamily::Inet),
                    DestAttribute::ForwardingMethod(ForwardingMethod::DirectRoute),
                    DestAttribute::Weight(1),
                    DestAttribute::UpperThreshold(0),
                    DestAttribute::LowerThreshold(0),
                ]),
            ],
        ),
    );
}

#[test]
fn daemon_dump_reply_with_ipv4_group() {
    // ip_vs_genl_fill_daemon: STATE, MCAST_IFN, SYNC_ID, SYNC_MAXLEN,
    // MCAST_PORT (host order), MCAST_TTL, MCAST_GROUP (network order).
    let bytes = hex("
        40 00 03 00
          08 00 01 00 01 00 00 00
          09 00 02 00 65 74 68 31 00 00 00 00
          08 00 03 00 07 00 00 00
          06 00 04 00 c0 05 00 00
          06 00 07 00 90 22 00 00
          05 00 08 00 01 00 00 00
          08 00 05 00 e0 00 00 51");
    both_ways(
        IpvsCommand::NewDaemon,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewDaemon,
            vec![IpvsAttribute::Daemon(vec![
                DaemonAttribute::State(DaemonState::Master),
                DaemonAttribute::McastInterface("eth1".into()),
                DaemonAttribute::SyncId(7),
                DaemonAttribute::SyncMaxLen(1472),
                DaemonAttribute::McastPort(8848),
                DaemonAttribute::McastTtl(1),
                DaemonAttribute::McastGroup(Ipv4Addr::new(224, 0, 0, 81)),
            ])],
        ),
    );
}

#[test]
fn daemon_with_ipv6_group() {
    let bytes = hex("
        20 00 03 00
          08 00 01 00 02 00 00 00
          14 00 06 00 ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 51");
    both_ways(
        IpvsCommand::NewDaemon,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::NewDaemon,
            vec![IpvsAttribute::Daemon(vec![
                DaemonAttribute::State(DaemonState::Backup),
                DaemonAttribute::McastGroup6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x51)),
            ])],
        ),
    );
}

#[test]
fn info_reply_puts_info_attributes_at_the_top_level() {
    // ip_vs_genl_get_cmd, GET_INFO: reply command SET_INFO with
    // IPVS_INFO_ATTR_VERSION = IP_VS_VERSION_CODE (0x010201) and the table size.
    let bytes = hex("08 00 01 00 01 02 01 00 08 00 02 00 00 10 00 00");
    both_ways(
        IpvsCommand::SetInfo,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::SetInfo,
            vec![
                IpvsAttribute::Info(InfoAttribute::Version(0x0001_0201)),
                IpvsAttribute::Info(InfoAttribute::ConnTabSize(4096)),
            ],
        ),
    );
}

#[test]
fn config_reply_carries_the_three_timeouts() {
    let bytes = hex("08 00 04 00 84 03 00 00 08 00 05 00 78 00 00 00 08 00 06 00 2c 01 00 00");
    both_ways(
        IpvsCommand::SetConfig,
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::SetConfig,
            vec![
                IpvsAttribute::TimeoutTcp(900),
                IpvsAttribute::TimeoutTcpFin(120),
                IpvsAttribute::TimeoutUdp(300),
            ],
        ),
    );
}

#[test]
fn unknown_numbers_are_kept_and_round_trip() {
    // A future top-level attribute 9, a service attribute 13 and command 42.
    let bytes = hex("
        08 00 09 00 de ad be ef
        0c 00 01 00
          08 00 0d 00 01 02 03 04");
    both_ways(
        IpvsCommand::Other(42),
        &bytes,
        &IpvsMessage::new(
            IpvsCommand::Other(42),
            vec![
                IpvsAttribute::Other(DefaultNla::new(9, vec![0xde, 0xad, 0xbe, 0xef])),
                IpvsAttribute::Service(vec![ServiceAttribute::Other(DefaultNla::new(
                    13,
                    vec![1, 2, 3, 4],
                ))]),
            ],
        ),
    );
    assert_eq!(u8::from(IpvsCommand::Other(42)), 42);
    assert_eq!(IpvsCommand::from(17), IpvsCommand::Flush);
    assert_eq!(ForwardingMethod::from(7), ForwardingMethod::Other(7));
}

#[test]
fn uapi_numbers_match_the_header() {
    let commands = [
        (IpvsCommand::NewService, 1),
        (IpvsCommand::SetService, 2),
        (IpvsCommand::DelService, 3),
        (IpvsCommand::GetService, 4),
        (IpvsCommand::NewDest, 5),
        (IpvsCommand::SetDest, 6),
        (IpvsCommand::DelDest, 7),
        (IpvsCommand::GetDest, 8),
        (IpvsCommand::NewDaemon, 9),
        (IpvsCommand::DelDaemon, 10),
        (IpvsCommand::GetDaemon, 11),
        (IpvsCommand::SetConfig, 12),
        (IpvsCommand::GetConfig, 13),
        (IpvsCommand::SetInfo, 14),
        (IpvsCommand::GetInfo, 15),
        (IpvsCommand::Zero, 16),
        (IpvsCommand::Flush, 17),
    ];
    for (command, number) in commands {
        assert_eq!(u8::from(command), number, "{command:?}");
        assert_eq!(IpvsCommand::from(number), command);
    }
    assert_eq!(u32::from(ForwardingMethod::Masquerade), 0);
    assert_eq!(u32::from(ForwardingMethod::DirectRoute), 3);
    assert_eq!(u8::from(TunnelType::Gre), 2);
    assert_eq!(u16::from(Protocol::Sctp), 132);
    assert_eq!(u16::from(AddressFamily::Inet6), 10);
}

#[test]
fn parse_errors_say_which_attribute() {
    let header = GenlHeader {
        cmd: IpvsCommand::NewService.into(),
        version: 1,
    };
    // A 3-byte port inside a service.
    let bytes = hex("0c 00 01 00 07 00 04 00 00 50 00 00");
    let error = IpvsMessage::parse_with_param(&bytes, header).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("IPVS_SVC_ATTR_PORT"), "{text}");
    assert!(text.contains("IPVS_CMD_ATTR_SERVICE"), "{text}");

    // Flags of the wrong size.
    let bytes = hex("0c 00 01 00 08 00 07 00 01 00 00 00");
    let text = IpvsMessage::parse_with_param(&bytes, header)
        .unwrap_err()
        .to_string();
    assert!(text.contains("struct ip_vs_flags"), "{text}");

    // An attribute whose length runs past the buffer.
    let bytes = hex("10 00 01 00 06 00 04 00");
    assert!(IpvsMessage::parse_with_param(&bytes, header).is_err());
}

#[test]
fn short_addresses_are_zero_padded() {
    let addr = InetAddr::parse(&[10, 0, 0, 1], "test").unwrap();
    assert_eq!(
        addr.to_ip(AddressFamily::Inet),
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
    assert!(InetAddr::parse(&[0; 17], "test").is_err());
    assert_eq!(addr.to_ip(AddressFamily::Other(3)), None);
}

/// Found by fuzzing (issue 7 item 3): a 32-bit stats block may carry a
/// counter 8 bytes wide (parsing accepts either width); emitting it cut the
/// value to 32 bits. Now such a value keeps its 8 bytes.
#[test]
fn a_wide_counter_in_a_32_bit_stats_block_round_trips() {
    let header = GenlHeader {
        cmd: IpvsCommand::NewService.into(),
        version: IPVS_GENL_VERSION,
    };
    let stats = Stats {
        conns: 0x1_0000_0002,
        ..Stats::default()
    };
    let message = IpvsMessage::new(
        IpvsCommand::NewService,
        vec![IpvsAttribute::Service(vec![
            ServiceAttribute::Stats(stats),
            ServiceAttribute::Stats64(stats),
        ])],
    );
    let mut bytes = vec![0; message.buffer_len()];
    message.emit(&mut bytes);
    assert_eq!(
        IpvsMessage::parse_with_param(&bytes, header).unwrap(),
        message
    );
    // A block as the kernel sends it keeps its size.
    let small = Stats {
        conns: 7,
        ..Stats::default()
    };
    assert_eq!(small.value_len(false), 10 * 4 + 8 * 4 + 2 * 8);
    assert_eq!(stats.value_len(false), small.value_len(false) + 4);
}
