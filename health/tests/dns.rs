//! DNS_CHECK against a real UDP responder on 127.0.0.1: NOERROR is up, an error RCODE is
//! down, silence is down at the timeout, and stray datagrams (other ID) are ignored.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use haldir_health::dns::{DnsCheck, DnsType};
use haldir_health::{CheckOutcome, Checker};
use tokio::net::UdpSocket;

#[derive(Clone, Copy)]
enum Answer {
    Rcode(u8),
    Silent,
    WrongIdFirst,
}

/// Answers each query by echoing it back as a response with the chosen RCODE; records the
/// questions it saw.
async fn responder(answer: Arc<Mutex<Answer>>, seen: Arc<Mutex<Vec<Vec<u8>>>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            let query = buf[..n].to_vec();
            seen.lock().unwrap().push(query.clone());
            let mut reply = query.clone();
            reply[2] |= 0x80; // QR
            reply[3] |= 0x80; // RA
            let answer = *answer.lock().unwrap();
            match answer {
                Answer::Silent => {}
                Answer::Rcode(rcode) => {
                    reply[3] |= rcode;
                    socket.send_to(&reply, peer).await.unwrap();
                }
                Answer::WrongIdFirst => {
                    let mut stray = reply.clone();
                    stray[0] ^= 0xff;
                    stray[3] |= 2; // SERVFAIL, but for another ID: must be ignored
                    socket.send_to(&stray, peer).await.unwrap();
                    socket.send_to(&reply, peer).await.unwrap();
                }
            }
        }
    });
    addr
}

#[tokio::test]
async fn dns_check_is_up_on_noerror_and_down_on_error_or_silence() {
    let answer = Arc::new(Mutex::new(Answer::Rcode(0)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = responder(answer.clone(), seen.clone()).await;
    let check = DnsCheck::new(addr, DnsType::A, "www.example.com")
        .unwrap()
        .with_timeout(ms(300));
    assert_eq!(check.kind(), "DNS_CHECK");
    assert_eq!(check.default_retry(), 3);
    assert_eq!(check.check().await, CheckOutcome::Up);
    let q = seen.lock().unwrap()[0].clone();
    assert_eq!(&q[12..], b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");

    *answer.lock().unwrap() = Answer::Rcode(3);
    let CheckOutcome::Down(reason) = check.check().await else {
        panic!("NXDOMAIN must be down")
    };
    assert!(reason.contains("RCODE 3"), "{reason}");

    *answer.lock().unwrap() = Answer::WrongIdFirst;
    assert_eq!(check.check().await, CheckOutcome::Up);

    *answer.lock().unwrap() = Answer::Silent;
    let CheckOutcome::Down(reason) = check.check().await else {
        panic!("silence must be down")
    };
    assert!(reason.contains("within 300ms"), "{reason}");
}
