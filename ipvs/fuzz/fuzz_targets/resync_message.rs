//! Fuzzes the parser of haldir's bulk-resync request / done messages (what
//! anyone on the sync segment can send to a router's haldir): it must never
//! panic, and what it accepts must emit back to the very same bytes.

#![no_main]

use haldir_ipvs::sync_wire::ResyncMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ResyncMessage::parse(data) {
        assert_eq!(message.emit(), data);
    }
});
