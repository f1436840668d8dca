//! PING_CHECK with a real ICMP socket: 127.0.0.1 and ::1 answer (up); an address nothing
//! answers for is down within connect_timeout. Needs an ICMP socket (a datagram one if
//! net.ipv4.ping_group_range allows this process, else a raw one: root or CAP_NET_RAW);
//! skipped loudly when neither opens.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use haldir_health::ping::PingCheck;
use haldir_health::{CheckOutcome, Checker};

fn check(target: &str, timeout: Duration) -> PingCheck {
    PingCheck {
        target: target.parse::<IpAddr>().unwrap(),
        bind_to: None,
        timeout,
    }
}

/// Whether this process can open an ICMP socket at all.
fn can_ping() -> bool {
    use socket2::{Domain, Protocol, Socket, Type};
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).is_ok()
        || Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).is_ok()
}

#[tokio::test]
async fn loopback_answers_and_an_unanswered_address_is_down_within_the_timeout() {
    if !can_ping() {
        eprintln!("SKIPPED loopback_answers_and_an_unanswered_address_is_down_within_the_timeout: no ICMP socket (ping_group_range excludes this process and it lacks CAP_NET_RAW)");
        return;
    }
    let c = check("127.0.0.1", Duration::from_secs(2));
    assert_eq!(c.kind(), "PING_CHECK");
    assert_eq!(c.check().await, CheckOutcome::Up);
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        assert_eq!(
            check("::1", Duration::from_secs(2)).check().await,
            CheckOutcome::Up
        );
    }
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing answers there. With no route, the
    // send fails at once, which is down too.
    let started = Instant::now();
    let CheckOutcome::Down(reason) = check("192.0.2.77", Duration::from_millis(300))
        .check()
        .await
    else {
        panic!("an address nothing answers for must be down");
    };
    assert!(started.elapsed() < Duration::from_secs(3), "{reason}");
}
