//! Unit tests of the resync module's plain parts: addresses, the status value's JSON shape
//! (its renderings are tested in the status crate, `status/src/sections.rs`). The machine's
//! behaviour is tested on a simulated clock in `ipvs/tests/resync_sim.rs`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::json;

use super::*;

#[test]
fn addresses_follow_the_kernel_defaults_and_the_configuration() {
    let a = Addresses::new(None, None, None);
    assert_eq!(a.group, IpAddr::V4(DEFAULT_GROUP_V4));
    assert_eq!((a.sync_port, a.control_port, a.max_len), (8848, 8849, 1472));
    let group: IpAddr = "ff02::8148".parse().unwrap();
    let a = Addresses::new(Some(group), Some(9000), Some(1200));
    assert_eq!((a.sync_port, a.control_port, a.max_len), (9000, 9001, 1200));
    assert_eq!(Addresses::new(Some(group), Some(9000), None).max_len, 1452);
    assert_eq!(
        Addresses::new(None, Some(u16::MAX), None).control_port,
        65534
    );
}

fn full_status() -> ResyncStatus {
    ResyncStatus {
        enabled: true,
        role: ResyncRole::Both,
        pending: Some(PendingStatus {
            since_unix: 99.5,
            attempts: 3,
        }),
        last_sent: Some(SentStatus {
            at_unix: 90.25,
            to: "10.0.0.2".into(),
            records: 40,
            messages: 2,
            entries: 41,
            skipped: BTreeMap::from([("pe_data".to_owned(), 1)]),
            pace: 1,
            millis: 512,
            read_millis: 300,
        }),
        last_received: Some(ReceivedStatus {
            at_unix: 100.0,
            from: "10.0.0.1".into(),
            records: 40,
            messages: 2,
            master_millis: 500,
            millis: 767,
            attempts: 2,
            pace: 0,
            kernel_socket_drops: None,
        }),
        requests_sent: 5,
        requests_received: 6,
        dumps_sent: 1,
        records_sent: 40,
        resyncs_received: 1,
        preemption_holds: 2,
        hold_timeouts: 1,
        drops: BTreeMap::from([("not_master".to_owned(), 4), ("bad_magic".to_owned(), 1)]),
    }
}

/// The JSON is the one `status_json()` built with `json!` before the machine: same keys,
/// same values, same shape (the tests of the binary and the VM read it).
#[test]
fn the_status_serializes_as_the_bulk_resync_object_always_did() {
    let expected = json!({
        "enabled": true,
        "role": "both",
        "pending": {"since_unix": 99.5, "attempts": 3},
        "last_sent": {
            "at_unix": 90.25, "to": "10.0.0.2", "records": 40, "messages": 2, "entries": 41,
            "skipped": {"pe_data": 1}, "pace": 1, "millis": 512, "read_millis": 300,
        },
        "last_received": {
            "at_unix": 100.0, "from": "10.0.0.1", "records": 40, "messages": 2,
            "master_millis": 500, "millis": 767, "attempts": 2, "pace": 0,
            "kernel_socket_drops": null,
        },
        "requests_sent": 5,
        "requests_received": 6,
        "dumps_sent": 1,
        "records_sent": 40,
        "resyncs_received": 1,
        "preemption_holds": 2,
        "hold_timeouts": 1,
        "drops": {"bad_magic": 1, "not_master": 4},
    });
    assert_eq!(serde_json::to_value(full_status()).unwrap(), expected);
    let idle = json!({
        "enabled": false, "role": "none", "pending": null, "last_sent": null,
        "last_received": null, "requests_sent": 0, "requests_received": 0, "dumps_sent": 0,
        "records_sent": 0, "resyncs_received": 0, "preemption_holds": 0, "hold_timeouts": 0,
        "drops": {},
    });
    assert_eq!(serde_json::to_value(ResyncStatus::default()).unwrap(), idle);
    // And back: `haldir status` renders the daemon's JSON.
    let back: ResyncStatus = serde_json::from_value(expected).unwrap();
    assert_eq!(back, full_status());
}
