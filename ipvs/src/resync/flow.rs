//! Flow control of a bulk resync, pure: how fast a dump is sent for a pace, and how many
//! messages the backup's kernel sync socket dropped, read from `/proc/net/udp` text.

use std::net::IpAddr;
use std::time::Duration;

use super::MAX_PACE;

/// The pacing of a dump: `burst` messages, then `gap`. Pace 0 sends bursts of 16 messages
/// a millisecond; each step halves the burst down to 1 message a millisecond (pace 4),
/// then the gap grows by a millisecond a step (pace − 3 ms); paces above [`MAX_PACE`]
/// count as [`MAX_PACE`].
pub fn pacing(pace: u8) -> (usize, Duration) {
    let pace = u32::from(pace.min(MAX_PACE));
    if pace <= 4 {
        ((16usize >> pace).max(1), Duration::from_millis(1))
    } else {
        (1, Duration::from_millis(u64::from(pace - 3)))
    }
}

/// Drops counted on the kernel's sync receive socket (bound to the group and
/// port) in this namespace's `/proc/net/udp` text; `None`: not found (IPv6, or no
/// backup daemon).
pub fn kernel_receive_drops(udp_table: &str, group: IpAddr, port: u16) -> Option<u64> {
    let IpAddr::V4(group) = group else {
        return None;
    };
    // The address is printed as the raw 32-bit word, in host byte order.
    let wanted = format!("{:08X}:{:04X}", u32::from_ne_bytes(group.octets()), port);
    udp_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&wanted.as_str()))
            .then(|| fields.last().and_then(|d| d.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_slows_down_step_by_step() {
        assert_eq!(pacing(0), (16, Duration::from_millis(1)));
        assert_eq!(pacing(4), (1, Duration::from_millis(1)));
        assert_eq!(pacing(5), (1, Duration::from_millis(2)));
        assert_eq!(pacing(200), pacing(MAX_PACE));
    }

    #[test]
    fn the_kernel_sockets_drops_are_read_from_proc_net_udp() {
        // 224.0.0.81:8848 as a little-endian machine prints it.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   12: 510000E0:2290 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 17\n\
   13: 00000000:2291 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0\n";
        let group: IpAddr = "224.0.0.81".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(kernel_receive_drops(table, group, 8848), Some(17));
        }
        assert_eq!(kernel_receive_drops(table, group, 9999), None);
    }
}
