//! Authentication of bulk-resync messages: a REQUEST makes the master multicast its whole
//! connection table, and a DONE lifts the backup's preemption hold, so on a segment shared
//! with the real servers both must come from a key holder.
//!
//! The keys, the modes (`enforce`, `permissive`, `receive-only`), the rotation and the
//! anti-replay rules are those of the followed VRRP instance's `auth_hmac`
//! ([`haldir_vrrp::auth`]), and so is the trailer's layout
//! ([`haldir_vrrp::wire::auth::TrailerRepr`]): key id, 64-bit sequence (wall clock and
//! counter), HMAC-SHA256 truncated to 128 bits. The trailer follows the message; its
//! presence is told by length ([`crate::sync_wire::ResyncMessage::parse_signed`]).
//!
//! The HMAC covers, in this order: the [`DOMAIN`] string (so an advert's HMAC can never
//! pass as a resync message's, nor the reverse), the sender's IP address (the advert
//! trailer's 20-byte pseudo-header with version and VRID 0: family, address), the whole
//! message, and the trailer's first 12 bytes. Binding the source address is what makes the per-source replay marks
//! hold: a capture re-sent from another (spoofed) address does not verify. The sender
//! therefore picks its source address itself (`src/bulk_resync.rs` sends with
//! `IP_PKTINFO` / `IPV6_PKTINFO`).

use std::net::IpAddr;
use std::time::Duration;

use haldir_vrrp::auth::{Authenticator, Verdict};
use haldir_vrrp::wire::auth::{
    pseudo_header, tags_equal, trailer_header, truncated, TrailerRepr, HMAC_LEN, TRAILER_LEN,
};
use ring::hmac;

/// Domain separation: the first bytes under every resync HMAC.
pub const DOMAIN: &[u8] = b"haldir bulk resync v1\0";

/// The truncated HMAC of `message` sent from `source` with a trailer of `key_id` and
/// `sequence`.
pub fn mac(
    key: &hmac::Key,
    source: IpAddr,
    message: &[u8],
    key_id: u8,
    sequence: u64,
) -> [u8; HMAC_LEN] {
    let mut context = hmac::Context::with_key(key);
    context.update(DOMAIN);
    context.update(&pseudo_header(0, 0, source));
    context.update(message);
    context.update(&trailer_header(key_id, sequence));
    truncated(&context.sign())
}

/// `message` as sent from `source` at `unix_now`: with a trailer when `auth` signs (its
/// mode is not receive-only), as it is otherwise.
pub fn seal(
    auth: Option<&mut Authenticator>,
    unix_now: Duration,
    source: IpAddr,
    mut message: Vec<u8>,
) -> Vec<u8> {
    let Some((key, key_id, sequence)) = auth.and_then(|a| a.sign(unix_now)) else {
        return message;
    };
    let trailer = TrailerRepr {
        key_id,
        sequence,
        hmac: mac(&key, source, &message, key_id, sequence),
    };
    let at = message.len();
    message.resize(at + TRAILER_LEN, 0);
    trailer.emit(&mut message[at..]);
    message
}

/// What `auth` makes of `message` (without its trailer) received from `source`.
pub fn check(
    auth: &mut Authenticator,
    unix_now: Duration,
    source: IpAddr,
    message: &[u8],
    trailer: Option<&[u8]>,
) -> Verdict {
    auth.check_with(unix_now, source, trailer, |key, trailer| {
        tags_equal(
            &mac(key, source, message, trailer.key_id, trailer.sequence),
            &trailer.hmac,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use haldir_vrrp::auth::{AntiReplay, AuthConfig, AuthFailure, AuthKey, Mode};

    fn authenticator(secret: u8) -> Authenticator {
        Authenticator::new(AuthConfig {
            keys: vec![AuthKey {
                id: 1,
                secret: vec![secret; 32],
            }],
            active_key: 1,
            mode: Mode::Enforce,
            anti_replay: AntiReplay::Time { window_secs: 5 },
        })
    }

    fn split(sealed: &[u8]) -> (&[u8], &[u8]) {
        sealed.split_at(sealed.len() - TRAILER_LEN)
    }

    #[test]
    fn a_sealed_message_verifies_once_from_its_source_only() {
        let now = Duration::from_secs(1_800_000_000);
        let source: IpAddr = "10.0.0.1".parse().unwrap();
        let mut sender = authenticator(7);
        let sealed = seal(Some(&mut sender), now, source, b"HLDR-message".to_vec());
        let (message, trailer) = split(&sealed);
        assert_eq!(message, b"HLDR-message");

        let mut receiver = authenticator(7);
        let other: IpAddr = "10.0.0.66".parse().unwrap();
        assert_eq!(
            check(&mut receiver, now, other, message, Some(trailer)),
            Verdict::Dropped(AuthFailure::BadHmac),
            "a capture re-sent from another address"
        );
        assert_eq!(
            check(&mut receiver, now, source, message, Some(trailer)),
            Verdict::Authenticated
        );
        assert_eq!(
            check(&mut receiver, now, source, message, Some(trailer)),
            Verdict::Dropped(AuthFailure::Replay)
        );
        let mut altered = message.to_vec();
        altered[6] ^= 1;
        let mut fresh = authenticator(7);
        assert_eq!(
            check(&mut fresh, now, source, &altered, Some(trailer)),
            Verdict::Dropped(AuthFailure::BadHmac)
        );
        assert_eq!(
            check(&mut fresh, now, source, message, None),
            Verdict::Dropped(AuthFailure::Missing)
        );
        let mut stranger = authenticator(8);
        assert_eq!(
            check(&mut stranger, now, source, message, Some(trailer)),
            Verdict::Dropped(AuthFailure::BadHmac)
        );
    }

    #[test]
    fn an_advert_hmac_never_verifies_as_a_resync_one() {
        let key = haldir_vrrp::wire::auth::key(&[7; 32]);
        let source: IpAddr = "10.0.0.1".parse().unwrap();
        let message = [0x31u8, 1, 100, 1, 0, 100, 0, 0, 10, 0, 0, 100];
        let advert = haldir_vrrp::wire::auth::compute(&key, source, &message, 1, 5);
        assert_ne!(advert, mac(&key, source, &message, 1, 5));
    }

    #[test]
    fn receive_only_sends_unsigned() {
        let mut sender = authenticator(7);
        let mut config = sender.config().clone();
        config.mode = Mode::ReceiveOnly;
        sender.reconfigure(config);
        let sealed = seal(
            Some(&mut sender),
            Duration::from_secs(1),
            "10.0.0.1".parse().unwrap(),
            b"m".to_vec(),
        );
        assert_eq!(sealed, b"m");
    }
}
