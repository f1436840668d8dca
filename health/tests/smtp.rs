//! SMTP_CHECK against real SMTP-speaking listeners on 127.0.0.1: a server that greets with
//! 220 and answers HELO with 250 (multi-line replies included) is up; a 554 greeting, a 5xx
//! answer to HELO, a server that never greets and one that speaks HTTP are down, the silent
//! one within connect_timeout; the HELO carries helo_name.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haldir_health::smtp::SmtpCheck;
use haldir_health::{CheckOutcome, Checker};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A one-connection-at-a-time server: sends `greeting`, then answers the first line it
/// reads with `helo_answer` (recording the line), then reads until the client closes.
async fn server(
    greeting: &'static str,
    helo_answer: &'static str,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if !greeting.is_empty() && write.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                if greeting.is_empty() {
                    // Never greets: hold the connection.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    record.lock().unwrap().push(line.clone());
                    if line.starts_with("HELO") {
                        let _ = write.write_all(helo_answer.as_bytes()).await;
                    } else if line == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn check(target: SocketAddr) -> SmtpCheck {
    SmtpCheck {
        target,
        bind_to: None,
        timeout: Duration::from_millis(800),
        helo_name: "director.example".into(),
    }
}

#[tokio::test]
async fn a_server_that_greets_and_answers_helo_is_up_and_gets_our_helo_name() {
    let (addr, seen) = server(
        "220 mx.example ESMTP\r\n",
        "250-mx.example\r\n250 SIZE 1000\r\n",
    )
    .await;
    let c = check(addr);
    assert_eq!(c.kind(), "SMTP_CHECK");
    assert_eq!(c.check().await, CheckOutcome::Up);
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["HELO director.example", "QUIT"],
        "HELO with helo_name, then QUIT"
    );
}

#[tokio::test]
async fn a_refusing_greeting_a_refused_helo_and_http_are_down() {
    for (greeting, helo, expect) in [
        ("554 no service\r\n", "250 ok\r\n", "greeting 554"),
        ("220 mx\r\n", "550 go away\r\n", "HELO answered 550"),
        ("HTTP/1.1 400 Bad Request\r\n", "", "not an SMTP reply"),
    ] {
        let (addr, _) = server(greeting, helo).await;
        let CheckOutcome::Down(reason) = check(addr).check().await else {
            panic!("{greeting:?} / {helo:?} must be down");
        };
        assert!(reason.contains(expect), "{reason}");
    }
}

#[tokio::test]
async fn a_silent_server_and_a_closed_port_are_down_within_the_timeout() {
    let (addr, _) = server("", "").await;
    let started = Instant::now();
    let CheckOutcome::Down(reason) = check(addr).check().await else {
        panic!("a server that never greets must be down");
    };
    let took = started.elapsed();
    assert!(reason.contains("within"), "{reason}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let CheckOutcome::Down(reason) = check(addr).check().await else {
        panic!("a closed port must be down");
    };
    assert!(reason.contains("refused"), "{reason}");
}
