//! Service and destination counters: the nested `IPVS_*_ATTR_STATS` and
//! `IPVS_*_ATTR_STATS64` attributes (`IPVS_STATS_ATTR_*` inside).
//!
//! `ip_vs_genl_fill_stats` puts connection, packet and rate counters as
//! NLA_U32 and the two byte counters as NLA_U64; `ip_vs_genl_fill_stats64`
//! puts all ten as NLA_U64. Both in uapi order, `IPVS_STATS_ATTR_PAD` only
//! where the architecture needs 64-bit alignment.

use netlink_packet_core::{DecodeError, NlasIterator, NLA_HEADER_SIZE};

use super::uapi_enum;

uapi_enum! {
    /// `IPVS_STATS_ATTR_*`: which counter an attribute carries.
    pub enum StatsCounter: u16 {
        /// `IPVS_STATS_ATTR_CONNS`: connections scheduled.
        Conns = 1,
        /// `IPVS_STATS_ATTR_INPKTS`: incoming packets.
        InPackets = 2,
        /// `IPVS_STATS_ATTR_OUTPKTS`: outgoing packets.
        OutPackets = 3,
        /// `IPVS_STATS_ATTR_INBYTES`: incoming bytes.
        InBytes = 4,
        /// `IPVS_STATS_ATTR_OUTBYTES`: outgoing bytes.
        OutBytes = 5,
        /// `IPVS_STATS_ATTR_CPS`: current connection rate.
        ConnRate = 6,
        /// `IPVS_STATS_ATTR_INPPS`: current incoming packet rate.
        InPacketRate = 7,
        /// `IPVS_STATS_ATTR_OUTPPS`: current outgoing packet rate.
        OutPacketRate = 8,
        /// `IPVS_STATS_ATTR_INBPS`: current incoming byte rate.
        InByteRate = 9,
        /// `IPVS_STATS_ATTR_OUTBPS`: current outgoing byte rate.
        OutByteRate = 10,
        /// `IPVS_STATS_ATTR_PAD`: alignment padding, no value.
        Pad = 11,
    }
}

/// The ten counters of one stats block. In a 32-bit block (`..._STATS`) the
/// non-byte counters are truncated to 32 bits by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub in_packets: u64,
    /// Outgoing packets.
    pub out_packets: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
    /// Connections per second.
    pub conn_rate: u64,
    /// Incoming packets per second.
    pub in_packet_rate: u64,
    /// Outgoing packets per second.
    pub out_packet_rate: u64,
    /// Incoming bytes per second.
    pub in_byte_rate: u64,
    /// Outgoing bytes per second.
    pub out_byte_rate: u64,
}

/// The counters in uapi order.
const ORDER: [StatsCounter; 10] = [
    StatsCounter::Conns,
    StatsCounter::InPackets,
    StatsCounter::OutPackets,
    StatsCounter::InBytes,
    StatsCounter::OutBytes,
    StatsCounter::ConnRate,
    StatsCounter::InPacketRate,
    StatsCounter::OutPacketRate,
    StatsCounter::InByteRate,
    StatsCounter::OutByteRate,
];

impl Stats {
    fn slot(&mut self, counter: StatsCounter) -> Option<&mut u64> {
        Some(match counter {
            StatsCounter::Conns => &mut self.conns,
            StatsCounter::InPackets => &mut self.in_packets,
            StatsCounter::OutPackets => &mut self.out_packets,
            StatsCounter::InBytes => &mut self.in_bytes,
            StatsCounter::OutBytes => &mut self.out_bytes,
            StatsCounter::ConnRate => &mut self.conn_rate,
            StatsCounter::InPacketRate => &mut self.in_packet_rate,
            StatsCounter::OutPacketRate => &mut self.out_packet_rate,
            StatsCounter::InByteRate => &mut self.in_byte_rate,
            StatsCounter::OutByteRate => &mut self.out_byte_rate,
            StatsCounter::Pad | StatsCounter::Other(_) => return None,
        })
    }

    fn get(&self, counter: StatsCounter) -> u64 {
        let mut copy = *self;
        copy.slot(counter).map_or(0, |v| *v)
    }

    /// Value width of `counter` in a 32-bit (`wide == false`) or 64-bit block;
    /// 8 also for a value that does not fit 32 bits (parsing accepts either
    /// width, so such a value must not be truncated: found by fuzzing).
    fn width(&self, counter: StatsCounter, wide: bool) -> usize {
        if wide
            || matches!(counter, StatsCounter::InBytes | StatsCounter::OutBytes)
            || self.get(counter) > u64::from(u32::MAX)
        {
            8
        } else {
            4
        }
    }

    /// Parses the nested counters. Either width is accepted for any counter
    /// (the value length says which); padding and unknown counters are skipped.
    pub(crate) fn parse(value: &[u8], what: &str) -> Result<Stats, DecodeError> {
        let mut stats = Stats::default();
        for nla in NlasIterator::new(value) {
            let nla = nla.map_err(|e| DecodeError::from(format!("{what}: {e}")))?;
            let counter = StatsCounter::from(nla.kind());
            let Some(slot) = stats.slot(counter) else {
                continue;
            };
            *slot = match *nla.value() {
                [a, b, c, d] => u64::from(u32::from_ne_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
                ref other => {
                    return Err(DecodeError::from(format!(
                        "{what}: counter {counter:?} has {} bytes, expected 4 or 8",
                        other.len()
                    )))
                }
            };
        }
        Ok(stats)
    }

    /// Bytes the ten counters take in a block of the given width.
    pub(crate) fn value_len(&self, wide: bool) -> usize {
        ORDER
            .iter()
            .map(|&c| NLA_HEADER_SIZE + self.width(c, wide))
            .sum()
    }

    /// Emits the ten counters as the kernel does (no padding attributes).
    pub(crate) fn emit(&self, buffer: &mut [u8], wide: bool) {
        let mut at = 0;
        for counter in ORDER {
            let width = self.width(counter, wide);
            let len = (NLA_HEADER_SIZE + width) as u16;
            buffer[at..at + 2].copy_from_slice(&len.to_ne_bytes());
            buffer[at + 2..at + 4].copy_from_slice(&u16::from(counter).to_ne_bytes());
            let value = self.get(counter);
            let value_at = at + NLA_HEADER_SIZE;
            if width == 8 {
                buffer[value_at..value_at + 8].copy_from_slice(&value.to_ne_bytes());
            } else {
                buffer[value_at..value_at + 4].copy_from_slice(&(value as u32).to_ne_bytes());
            }
            at += NLA_HEADER_SIZE + width;
        }
    }
}
