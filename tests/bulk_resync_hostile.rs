//! The bulk-resync port (`src/bulk_resync.rs`, sync port + 1) faces the sync segment:
//! whatever arrives there that is not a well-formed request or answer for this router is
//! counted by reason and dropped, and haldir goes on (host network namespaces; no IPVS
//! needed: the port is open whether or not the kernel's sync daemon can run).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use haldir_ipvs::sync_wire::{ResyncDone, ResyncMessage, ResyncRequest};
use haldir_lab::haldir::{Haldir, HaldirInstance};
use haldir_lab::{self as lab, skip_unless_root, wait_until, Lab};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

#[test]
fn malformed_and_foreign_resync_packets_are_counted_and_dropped() {
    if skip_unless_root(
        "bulk_resync_hostile::malformed_and_foreign_resync_packets_are_counted_and_dropped",
    ) {
        return;
    }
    let lab = Lab::new("bulk-hostile").unwrap();
    lab.add_host("r1", &["10.41.0.1/24"]).unwrap();
    lab.add_host("x", &["10.41.0.66/24"]).unwrap();
    let instance = HaldirInstance::v3(81, 150, Duration::from_millis(100), &["10.41.0.100/24"]);
    let config = format!(
        "[global_defs]\nlvs_sync_daemon = {{ interface = \"eth0\", instance = \"VI_1\", id = 9 }}\n\n{}",
        instance.render()
    );
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config).unwrap();
    assert!(wait_until(Duration::from_secs(10), || r1
        .log()
        .contains("bulk resync: listening on eth0")));

    let request = |sync_id| {
        ResyncMessage::Request(ResyncRequest {
            sync_id,
            pace: 0,
            nonce: 7,
        })
        .emit()
    };
    let done = ResyncMessage::Done(ResyncDone {
        sync_id: 9,
        nonce: 1234,
        records: 1,
        messages: 1,
        millis: 1,
    })
    .emit();
    let mut truncated = done.clone();
    truncated.pop();
    let packets: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.0\r\n\r\n".to_vec(), // bad_magic
        b"HLDR\x07\x01\x09\x00".to_vec(),   // bad_version
        b"HLDR\x01\x63\x09\x00".to_vec(),   // bad_kind
        truncated,                          // bad_length
        request(10),                        // other_syncid
        done,                               // unexpected_done (nothing pending)
        vec![0xff; 1500],                   // bad_magic
    ];
    lab::in_netns(&lab.ns_name("x"), || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket
            .set_multicast_if_v4(&"10.41.0.66".parse().unwrap())
            .unwrap();
        socket
            .bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let socket = UdpSocket::from(socket);
        // With the kernel's default TTLs (64 unicast, 1 multicast): taken as routed.
        for to in ["10.41.0.1:8849", "224.0.0.81:8849"] {
            socket.send_to(&request(9), to).unwrap();
        }
        // As on-link senders do (RFC 5798 §5.1.1.3's 255), to be read further.
        socket.set_ttl(255).unwrap();
        socket.set_multicast_ttl_v4(255).unwrap();
        for to in ["10.41.0.1:8849", "224.0.0.81:8849"] {
            let to: SocketAddr = to.parse().unwrap();
            for p in &packets {
                socket.send_to(p, to).unwrap();
            }
        }
    })
    .unwrap();
    let drops = |reason: &str| {
        r1.status()
            .and_then(|s| s["bulk_resync"]["drops"][reason].as_u64())
            .unwrap_or(0)
    };
    let counted = wait_until(Duration::from_secs(10), || {
        drops("bad_ttl") == 2
            && drops("bad_magic") == 4
            && drops("bad_version") == 2
            && drops("bad_kind") == 2
            && drops("bad_length") == 2
            && drops("other_syncid") == 2
            && drops("unexpected_done") == 2
    });
    let status = r1.status().unwrap_or_default();
    assert!(
        counted,
        "drops: {}\n{}",
        status["bulk_resync"]["drops"],
        r1.log()
    );
    assert_eq!(status["bulk_resync"]["dumps_sent"], 0);
    assert!(r1.is_running());
    assert!(r1.stop().unwrap().success(), "{}", r1.log());
}
