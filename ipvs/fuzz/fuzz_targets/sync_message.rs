//! Fuzzes the IPVS sync-protocol (version 1) decoder, as a backup would meet
//! datagrams: it must never panic; what it accepts must emit to bytes that
//! parse to the same message, and emit the same bytes again. Packing the
//! accepted records into datagrams must give back the same records.

#![no_main]

use haldir_ipvs::sync_wire::{pack, SyncMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = SyncMessage::parse(data) else {
        return;
    };
    let emitted = message.emit();
    assert_eq!(emitted.len(), message.buffer_len());
    let again = SyncMessage::parse(&emitted)
        .unwrap_or_else(|e| panic!("emitted message must parse: {e}\n{message:?}"));
    assert_eq!(again, message);
    assert_eq!(again.emit(), emitted);
    let (datagrams, too_big) = pack(message.sync_id, &message.conns, 1472);
    let mut back = Vec::new();
    for d in &datagrams {
        assert!(d.len() <= 1472);
        back.extend(SyncMessage::parse(d).expect("packed datagram parses").conns);
    }
    assert_eq!(back.len() + too_big, message.conns.len());
});
