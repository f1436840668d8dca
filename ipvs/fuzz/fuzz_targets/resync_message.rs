//! Fuzzes what anyone on the sync segment can send to a router's haldir on the bulk-resync
//! port: the parser of request / done messages must never panic, what it accepts must emit
//! back to the very same bytes (a trailer split off only at exactly one trailer past the
//! message), and the machine, signed and unsigned, master and backup, takes every input
//! without a panic.

#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use haldir_ipvs::client::DaemonRole;
use haldir_ipvs::resync::{Addresses, Resync, ResyncConfig};
use haldir_ipvs::sync_wire::{ResyncMessage, RESYNC_TRAILER_LEN};
use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthKey, Mode};
use libfuzzer_sys::fuzz_target;

fn machine(auth: Option<AuthConfig>, role: DaemonRole) -> Resync {
    let now = Instant::now();
    let mut machine = Resync::new(now, Vec::new(), 1);
    machine.handle_config(
        now,
        Some(ResyncConfig {
            sync_id: 9,
            addresses: Addresses::new(None, None, None),
            auth,
            peers: Vec::new(),
        }),
    );
    machine.handle_listening(now);
    machine.handle_roles(now, &[role]);
    machine.handle_kernel_drops(now, Some(0));
    machine
}

fuzz_target!(|data: &[u8]| {
    if let Ok((message, trailer)) = ResyncMessage::parse_signed(data) {
        let emitted = message.emit();
        match trailer {
            Some(trailer) => {
                assert_eq!(trailer.len(), RESYNC_TRAILER_LEN);
                assert_eq!([emitted.as_slice(), trailer].concat(), data);
            }
            None => assert_eq!(emitted, data),
        }
    }
    let auth = AuthConfig {
        keys: vec![AuthKey {
            id: 1,
            secret: vec![7; 32],
        }],
        active_key: 1,
        mode: Mode::Enforce,
        anti_replay: AntiReplay::Time { window_secs: 5 },
    };
    let from = SocketAddr::new(IpAddr::from([10, 0, 0, 2]), 8849);
    let unix = Duration::from_secs(1_800_000_000);
    for auth in [None, Some(auth)] {
        for role in [DaemonRole::Master, DaemonRole::Backup] {
            let mut machine = machine(auth.clone(), role);
            machine.handle_packet(Instant::now(), unix, from, Some(255), data);
            while machine.poll_transmit().is_some() || machine.poll_action().is_some() {}
        }
    }
});
