//! A packet capture on the lab's bridge, keeping the frames a VRRP failover consists of.
//!
//! An AF_PACKET socket bound to `br0` in the switch namespace, promiscuous so that unicast
//! frames between two ports are seen too (the bridge passes every frame up to a promiscuous
//! bridge device). Only VRRP (IPv4 or IPv6, protocol 112), ARP and ICMPv6 Neighbor
//! Advertisements (type 136) are kept, each with the instant the kernel received it
//! (`SO_TIMESTAMPNS`): a capture thread that a loaded machine leaves unscheduled for a while
//! reads a burst late, but the gaps between the frames' own times stay true. Parsing stops
//! at that classification: decoding VRRP itself is the job of `haldir-vrrp`.
//!
//! ```text
//!  Ethernet: dst(6) src(6) ethertype(2) | payload
//!  0x0806 ARP
//!  0x0800 IPv4: protocol at payload[9]; 112 = VRRP, header length = 4 * (payload[0] & 15)
//!  0x86dd IPv6: next header at payload[6]; 112 = VRRP, 58 = ICMPv6 (type at payload[40])
//! ```

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use pnet_datalink::{Channel, Config, DataLinkReceiver, NetworkInterface};

use super::lock;
use super::netns::{in_netns, Lab, BRIDGE};

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IANA protocol number of VRRP (RFC 5798 §5.1.1.4 / §5.1.2.4).
const IPPROTO_VRRP: u8 = 112;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_UDP: u8 = 17;
const UDP_HEADER: usize = 8;
/// ICMPv6 Neighbor Advertisement (RFC 4861 §4.4), what a VRRPv3 IPv6 master sends.
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
const IPV6_HEADER: usize = 40;

/// What kind of kept frame this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// VRRP over IPv4 (protocol 112).
    Vrrp4,
    /// VRRP over IPv6 (next header 112).
    Vrrp6,
    /// ARP (gratuitous or not).
    Arp,
    /// ICMPv6 Neighbor Advertisement (unsolicited or not).
    NeighborAdvert,
    /// haldir's bulk-resync request or DONE over IPv4 (UDP, payload "HLDR").
    ResyncControl4,
}

impl FrameKind {
    /// Classifies an Ethernet frame; `None` for frames the capture does not keep.
    pub fn of(frame: &[u8]) -> Option<FrameKind> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let payload = &frame[ETHERNET_HEADER..];
        match ethertype {
            ETHERTYPE_ARP => Some(FrameKind::Arp),
            ETHERTYPE_IPV4 if *payload.get(9)? == IPPROTO_VRRP => Some(FrameKind::Vrrp4),
            ETHERTYPE_IPV4 if *payload.get(9)? == IPPROTO_UDP => {
                let header = usize::from(*payload.first()? & 0x0f) * 4;
                (payload.get(header + UDP_HEADER..header + UDP_HEADER + 4)? == b"HLDR")
                    .then_some(FrameKind::ResyncControl4)
            }
            ETHERTYPE_IPV6 => match *payload.get(6)? {
                IPPROTO_VRRP => Some(FrameKind::Vrrp6),
                IPPROTO_ICMPV6 if *payload.get(IPV6_HEADER)? == ICMPV6_NEIGHBOR_ADVERT => {
                    Some(FrameKind::NeighborAdvert)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// True for VRRP adverts of either family.
    pub fn is_vrrp(self) -> bool {
        matches!(self, FrameKind::Vrrp4 | FrameKind::Vrrp6)
    }
}

/// The Ethernet source address of a frame.
pub fn src_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(6..12)?.try_into().ok()
}

/// The Ethernet destination address of a frame.
pub fn dst_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(..6)?.try_into().ok()
}

/// The IP payload of a VRRP frame (the VRRP packet itself), with the IP header skipped;
/// `None` for other frames.
pub fn vrrp_payload(frame: &[u8]) -> Option<&[u8]> {
    let ip = frame.get(ETHERNET_HEADER..)?;
    match FrameKind::of(frame)? {
        FrameKind::Vrrp4 => ip.get(usize::from(ip[0] & 0x0f) * 4..),
        // Next header was VRRP directly: no extension headers.
        FrameKind::Vrrp6 => ip.get(IPV6_HEADER..),
        _ => None,
    }
}

/// When `mac` sent a gratuitous ARP for `address` (an ARP whose sender and target address
/// are both `address`, announcing `mac`), in capture order.
pub fn gratuitous_arps(
    frames: &[Frame],
    mac: [u8; 6],
    address: std::net::Ipv4Addr,
) -> Vec<Instant> {
    frames
        .iter()
        .filter(|f| f.kind == FrameKind::Arp && f.src_mac() == mac)
        .filter(|f| {
            haldir_vrrp::wire::arp::ArpRepr::parse(&f.bytes).is_ok_and(|arp| {
                arp.sender_mac == mac && arp.sender_ip == address && arp.target_ip == address
            })
        })
        .map(|f| f.at)
        .collect()
}

/// A frame kept by the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// When the bridge received it (the kernel's receive timestamp, on the monotonic clock).
    pub at: Instant,
    /// What it is.
    pub kind: FrameKind,
    /// The whole Ethernet frame.
    pub bytes: Vec<u8>,
}

impl Frame {
    /// The Ethernet source address.
    pub fn src_mac(&self) -> [u8; 6] {
        src_mac(&self.bytes).unwrap_or_default()
    }
}

/// A running capture on the lab bridge; stops on drop.
pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("frames", &lock(&self.frames).len())
            .finish()
    }
}

/// Opens a promiscuous AF_PACKET receiver on `interface` in namespace `ns` (50 ms read
/// timeout, so a capture thread can notice it is asked to stop).
pub(crate) fn open_receiver(
    ns: &str,
    interface: &str,
    buffer: usize,
) -> anyhow::Result<Box<dyn DataLinkReceiver>> {
    in_netns(ns, || -> anyhow::Result<Box<dyn DataLinkReceiver>> {
        let index = nix::net::if_::if_nametoindex(interface)
            .with_context(|| format!("no interface {interface} in {ns}"))?;
        let link = NetworkInterface {
            name: interface.to_owned(),
            description: String::new(),
            index,
            mac: None,
            ips: Vec::new(),
            flags: 0,
        };
        let config = Config {
            read_timeout: Some(Duration::from_millis(50)),
            read_buffer_size: buffer,
            promiscuous: true,
            ..Config::default()
        };
        match pnet_datalink::channel(&link, config) {
            Ok(Channel::Ethernet(_tx, rx)) => Ok(rx),
            Ok(_) => bail!("unexpected channel type on {interface}"),
            Err(e) => Err(anyhow!(e))
                .with_context(|| format!("cannot open AF_PACKET on {interface} in {ns}")),
        }
    })?
}

/// A promiscuous AF_PACKET socket that returns each frame with the kernel's receive time.
struct StampedReceiver {
    socket: socket2::Socket,
    buffer: Vec<u8>,
}

impl StampedReceiver {
    /// Opens it on `interface` in namespace `ns`, with a 50 ms read timeout so that the
    /// capture thread can notice it is asked to stop.
    fn open(ns: &str, interface: &str, buffer: usize) -> anyhow::Result<StampedReceiver> {
        in_netns(ns, || -> anyhow::Result<StampedReceiver> {
            let index = nix::net::if_::if_nametoindex(interface)
                .with_context(|| format!("no interface {interface} in {ns}"))?;
            let all = (libc::ETH_P_ALL as u16).to_be();
            let socket = socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(i32::from(all))),
            )
            .with_context(|| format!("cannot open AF_PACKET in {ns}"))?;
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            link.sll_family = libc::AF_PACKET as u16;
            link.sll_protocol = all;
            link.sll_ifindex = index as i32;
            // SAFETY: the pointer and length describe the sockaddr_ll above.
            let bound = unsafe {
                libc::bind(
                    socket.as_raw_fd(),
                    (&link as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if bound != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot bind AF_PACKET to {interface} in {ns}"));
            }
            let membership = libc::packet_mreq {
                mr_ifindex: index as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // SAFETY: the pointer and length describe the packet_mreq above.
            let promiscuous = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    (&membership as *const libc::packet_mreq).cast(),
                    std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            };
            if promiscuous != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot make {interface} in {ns} promiscuous"));
            }
            socket.set_recv_buffer_size(buffer)?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::ReceiveTimestampns,
                &true,
            )
            .context("cannot ask for receive timestamps")?;
            Ok(StampedReceiver {
                socket,
                buffer: vec![0; 65536],
            })
        })?
    }

    /// The next frame and when the kernel received it; `None` after the read timeout.
    fn next(&mut self) -> Option<(Instant, &[u8])> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let (length, stamp) = {
            let mut parts = [std::io::IoSliceMut::new(&mut self.buffer)];
            let message = recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut parts,
                Some(&mut control),
                MsgFlags::empty(),
            )
            .ok()?;
            let stamp = message.cmsgs().ok()?.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(at) => Some(at),
                _ => None,
            });
            (message.bytes, stamp)
        };
        let now = Instant::now();
        let at = stamp
            .and_then(|at| {
                let received = std::time::UNIX_EPOCH
                    + Duration::new(at.tv_sec().try_into().ok()?, at.tv_nsec().try_into().ok()?);
                let ago = std::time::SystemTime::now().duration_since(received).ok()?;
                now.checked_sub(ago)
            })
            .unwrap_or(now);
        Some((at, &self.buffer[..length]))
    }
}

impl Capture {
    /// Starts capturing on `br0` in the lab's switch namespace.
    pub fn start(lab: &Lab) -> anyhow::Result<Capture> {
        Capture::start_in(&lab.switch_ns(), BRIDGE)
    }

    /// Starts capturing on `interface` of host `host` (e.g. one end of
    /// [`Lab::add_inner_veth`], to see what the host sends on the other).
    pub fn start_on(lab: &Lab, host: &str, interface: &str) -> anyhow::Result<Capture> {
        Capture::start_in(&lab.ns_name(host), interface)
    }

    fn start_in(ns: &str, interface: &str) -> anyhow::Result<Capture> {
        let mut receiver = StampedReceiver::open(ns, interface, 1 << 20)?;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("capture-{ns}"))
            .spawn({
                let (frames, stop) = (frames.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::SeqCst) {
                        // None is the read timeout: look at the stop flag again.
                        let Some((at, bytes)) = receiver.next() else {
                            continue;
                        };
                        if let Some(kind) = FrameKind::of(bytes) {
                            lock(&frames).push(Frame {
                                at,
                                kind,
                                bytes: bytes.to_vec(),
                            });
                        }
                    }
                }
            })
            .context("cannot start the capture thread")?;
        Ok(Capture {
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// A snapshot of the frames kept so far: (instant received, frame bytes).
    pub fn frames(&self) -> Vec<(Instant, Vec<u8>)> {
        lock(&self.frames)
            .iter()
            .map(|f| (f.at, f.bytes.clone()))
            .collect()
    }

    /// A snapshot of the frames kept so far, classified.
    pub fn kept(&self) -> Vec<Frame> {
        lock(&self.frames).clone()
    }

    /// Frames of `kind` sent from `mac`, in capture order.
    pub fn from_mac(&self, mac: [u8; 6], kind: FrameKind) -> Vec<Frame> {
        lock(&self.frames)
            .iter()
            .filter(|f| f.kind == kind && f.src_mac() == mac)
            .cloned()
            .collect()
    }

    /// Stops capturing and returns everything kept.
    pub fn stop(mut self) -> Vec<Frame> {
        self.shutdown();
        std::mem::take(&mut *lock(&self.frames))
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from keepalived 2.2.7 in a lab: VRRPv3 advert, VRID 51, priority 150,
    /// interval 5 cs, VIP 10.0.0.100, from 10.0.0.1 (MAC 02:48:4c:00:00:01) to 224.0.0.18.
    const VRRP4_FRAME: &str = "01005e000012 02484c000001 0800 \
        45c00020 00010000 ff70 d099 0a000001 e0000012 \
        3133 9601 0005 43d2 0a000064";

    /// Captured from the same keepalived: its gratuitous ARP request for 10.0.0.100.
    const GARP_FRAME: &str = "ffffffffffff 02484c000001 0806 \
        0001 0800 06 04 0001 02484c000001 0a000064 ffffffffffff 0a000064";

    fn hex(text: &str) -> Vec<u8> {
        let digits: String = text.split_whitespace().collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ipv4_protocol_112_is_vrrp_and_its_payload_follows_the_ip_header() {
        let frame = hex(VRRP4_FRAME);
        assert_eq!(FrameKind::of(&frame), Some(FrameKind::Vrrp4));
        assert_eq!(src_mac(&frame), Some([0x02, 0x48, 0x4c, 0, 0, 1]));
        let payload = vrrp_payload(&frame).unwrap();
        assert_eq!(payload[0], 0x31, "version 3, type 1 (advertisement)");
        assert_eq!(payload[1], 51, "VRID");
        assert_eq!(payload.len(), 12);
    }

    #[test]
    fn arp_is_kept_and_other_ethertypes_are_not() {
        let garp = hex(GARP_FRAME);
        assert_eq!(FrameKind::of(&garp), Some(FrameKind::Arp));
        assert_eq!(vrrp_payload(&garp), None);
        let mut other = garp.clone();
        other[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
        assert_eq!(FrameKind::of(&other), None);
        assert_eq!(FrameKind::of(&garp[..10]), None);
    }

    #[test]
    fn ipv6_neighbor_advert_is_kept_but_solicitation_is_not() {
        let mut frame = vec![0u8; ETHERNET_HEADER + IPV6_HEADER + 24];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        frame[ETHERNET_HEADER] = 0x60;
        frame[ETHERNET_HEADER + 6] = IPPROTO_ICMPV6;
        frame[ETHERNET_HEADER + IPV6_HEADER] = ICMPV6_NEIGHBOR_ADVERT;
        assert_eq!(FrameKind::of(&frame), Some(FrameKind::NeighborAdvert));
        frame[ETHERNET_HEADER + IPV6_HEADER] = 135;
        assert_eq!(FrameKind::of(&frame), None);
        frame[ETHERNET_HEADER + 6] = IPPROTO_VRRP;
        assert_eq!(FrameKind::of(&frame), Some(FrameKind::Vrrp6));
        assert_eq!(vrrp_payload(&frame).map(<[u8]>::len), Some(24));
    }
}
