//! UDP_CHECK against real UDP sockets on 127.0.0.1: a closed port (the kernel's ICMP port
//! unreachable) is down; a silent listener is up without require_reply and down with it;
//! an echo server's reply is held to require_reply's pattern (with `x` nibbles) and to the
//! reply length bounds; the payload is what is sent.

use std::net::SocketAddr;
use std::time::Duration;

use haldir_config::HexBytes;
use haldir_health::udp::{ReplyRule, UdpCheck};
use haldir_health::{CheckOutcome, Checker};
use tokio::net::UdpSocket;

/// A server answering every datagram with `answer(datagram)`; `None`: stays silent.
async fn server(answer: fn(&[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            if let Some(reply) = answer(&buffer[..n]) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    addr
}

fn check(target: SocketAddr, payload: &str, rule: Option<(&str, usize, usize)>) -> UdpCheck {
    UdpCheck {
        target,
        bind_to: None,
        timeout: Duration::from_millis(300),
        payload: HexBytes::parse(payload, false).unwrap().data,
        require_reply: rule.map(|(pattern, min_len, max_len)| {
            let HexBytes { data, mask } = HexBytes::parse(pattern, true).unwrap();
            ReplyRule {
                data,
                mask,
                min_len,
                max_len,
            }
        }),
    }
}

#[tokio::test]
async fn a_closed_port_is_down_and_a_silent_one_is_up_unless_a_reply_is_required() {
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let c = check(addr, "", None);
    assert_eq!(c.kind(), "UDP_CHECK");
    let CheckOutcome::Down(reason) = c.check().await else {
        panic!("port unreachable must be down");
    };
    assert!(reason.contains("refused"), "{reason}");

    let silent = server(|_| None).await;
    assert_eq!(check(silent, "", None).check().await, CheckOutcome::Up);
    let CheckOutcome::Down(reason) = check(silent, "", Some(("", 0, 255))).check().await else {
        panic!("require_reply with no reply must be down");
    };
    assert!(reason.contains("no reply"), "{reason}");
}

#[tokio::test]
async fn the_reply_is_held_to_the_pattern_and_the_lengths_and_the_payload_is_sent() {
    // Echoes what it got: the reply is the payload.
    let echo = server(|d| Some(d.to_vec())).await;
    let payload = "de ad be ef";
    assert_eq!(
        check(echo, payload, Some(("", 0, 255))).check().await,
        CheckOutcome::Up
    );
    assert_eq!(
        check(echo, payload, Some(("dead", 4, 4))).check().await,
        CheckOutcome::Up
    );
    assert_eq!(
        check(echo, payload, Some(("dxax", 0, 255))).check().await,
        CheckOutcome::Up,
        "x nibbles"
    );
    let CheckOutcome::Down(reason) = check(echo, payload, Some(("deaf", 0, 255))).check().await
    else {
        panic!("a reply that does not match must be down");
    };
    assert!(reason.contains("differs"), "{reason}");
    let CheckOutcome::Down(reason) = check(echo, payload, Some(("", 5, 255))).check().await else {
        panic!("a reply shorter than min_reply_length must be down");
    };
    assert!(reason.contains("outside 5..=255"), "{reason}");
}
