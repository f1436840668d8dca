//! TCP_CHECK against real listeners on 127.0.0.0/8: up, refused, a connect that hangs past
//! connect_timeout, bind_to, and down/up through the scheduler when a listener dies and
//! comes back.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use haldir_health::tcp::TcpCheck;
use haldir_health::{CheckId, CheckOutcome, CheckTiming, Checker, Transition};
use tokio::net::TcpListener;

fn check(target: SocketAddr, timeout: Duration) -> TcpCheck {
    TcpCheck {
        target,
        bind_to: None,
        connect_timeout: timeout,
        close_with_reset: true,
    }
}

#[tokio::test]
async fn a_listening_server_is_up_and_a_closed_port_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = check(addr, ms(500));
    assert_eq!(c.kind(), "TCP_CHECK");
    assert_eq!(c.check().await, CheckOutcome::Up);
    drop(listener);
    let CheckOutcome::Down(reason) = c.check().await else {
        panic!("closed port must be down")
    };
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test]
async fn bind_to_sets_the_source_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = check(listener.local_addr().unwrap(), ms(500));
    c.bind_to = Some(Box::new("127.0.0.2:0".parse().unwrap()));
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().1 });
    assert_eq!(c.check().await, CheckOutcome::Up);
    assert_eq!(accepted.await.unwrap().ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn a_connect_that_hangs_is_down_at_connect_timeout() {
    // A listener that never accepts, with a full accept queue: the kernel drops further
    // SYNs, so the next connect hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr: SocketAddr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(ms(200), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let c = check(addr, ms(300));
    let started = Instant::now();
    let CheckOutcome::Down(reason) = c.check().await else {
        panic!("a hanging connect must be down")
    };
    assert!(reason.contains("timed out after 300ms"), "{reason}");
    // Three times the timeout (it was 700 ms), for a loaded machine.
    let took = started.elapsed();
    eprintln!("a hanging connect: down after {took:?} (timeout 300 ms)");
    assert!(took >= ms(300) && took < ms(300) * 3, "{took:?}");
    drop(socket);
}

#[tokio::test]
async fn a_dead_listener_goes_down_after_retry_and_comes_back_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (scheduler, mut events) = scheduler();
    let timing = CheckTiming {
        delay_loop: ms(200),
        retry: 2,
        delay_before_retry: ms(100),
        warmup: Some(Duration::ZERO),
        ..CheckTiming::default()
    };
    scheduler.add(CheckId(42), Arc::new(check(addr, ms(300))), timing);
    no_event(&mut events, ms(500)).await;
    drop(listener);
    let died = Instant::now();
    let event = next_event(&mut events, ms(3000)).await;
    let detected = died.elapsed();
    assert_eq!(event.id, CheckId(42));
    assert!(matches!(event.transition, Transition::Down { .. }));
    // 3 attempts: the first within one delay_loop, then 2 retries 100 ms apart: 200 ms at
    // least, 400 ms at most expected, three times that allowed on a loaded machine (it was
    // 550 ms).
    eprintln!("a dead listener: down after {detected:?}");
    assert!(
        detected >= ms(200) && detected < ms(400) * 3,
        "{detected:?}"
    );
    let _listener = TcpListener::bind(addr).await.unwrap();
    let event = next_event(&mut events, ms(3000)).await;
    assert_eq!(event.transition, Transition::Up { weight: None });
    let stats = scheduler.stats();
    assert_eq!(stats.checks, 1);
    assert!(stats.runs_started >= 6);
    scheduler.shutdown(false).await;
}
