//! The sockets VRRP speaks through: raw IP sockets for adverts, a packet socket
//! for gratuitous ARP and unsolicited neighbour advertisements; and the ARP
//! packet socket of the DR real-server ARP check ([`ArpSocket`]).
//!
//! One [`AdvertSocket`] serves every virtual router of one interface and address
//! family. It is a pair: a receiving socket bound to the interface and joined to
//! the VRRP group, and a sending socket bound to our primary address (binding the
//! receiving one to an address would filter out the multicast it must hear).
//! The receiving socket's buffer is sized for many virtual routers on one link
//! ([`ADVERT_RECEIVE_BUFFER`]): the kernel's default holds a few hundred adverts, which
//! 255 instances on each of two routers fill in a tenth of a second of a stalled
//! process, and every advert dropped there can make a backup declare its master down.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn6};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::wire::arp::ETHERTYPE_ARP;
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::vrrp::{VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL};

/// keepalived marks adverts as network control (precedence 6); so do we.
const TOS_NETWORK_CONTROL: u32 = 0xc0;

/// A received VRRP packet, with what the IP header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAdvert {
    /// IP source.
    pub source: IpAddr,
    /// IP destination (the group, or our address for unicast).
    pub destination: IpAddr,
    /// TTL / hop limit as received.
    pub ttl: u8,
    /// Offset and length of the VRRP message in the receive buffer.
    pub payload: std::ops::Range<usize>,
}

/// Why a received datagram was not handed up.
#[derive(Debug)]
pub enum ReceiveError {
    /// The socket failed.
    Io(io::Error),
    /// The IPv4 header was malformed (a counted drop, not a failure).
    BadIpHeader(&'static str),
}

/// The raw sockets of one interface and family.
pub struct AdvertSocket {
    receive: AsyncFd<Socket>,
    send: Socket,
    interface_index: u32,
    family_v6: bool,
}

/// Receive buffer of an advert socket: about 4,000 queued adverts (each costs about a
/// kilobyte of buffer in the kernel), over a second of 255 instances at 100 ms on each
/// of two routers. Set with `SO_RCVBUFFORCE` (CAP_NET_ADMIN, which haldir holds) so that
/// `net.core.rmem_max` does not cap it; without the capability, as large as rmem_max allows.
pub const ADVERT_RECEIVE_BUFFER: usize = 4 << 20;

impl AdvertSocket {
    /// Opens the pair on `interface` (index `interface_index`), sending from `source`.
    pub fn open(interface: &str, interface_index: u32, source: IpAddr) -> io::Result<AdvertSocket> {
        let domain = if source.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let protocol = Some(Protocol::from(i32::from(VRRP_PROTOCOL)));

        let receive = Socket::new(domain, Type::RAW, protocol)?;
        receive.bind_device(Some(interface.as_bytes()))?;
        receive.set_nonblocking(true)?;
        if nix::sys::socket::setsockopt(
            &receive,
            nix::sys::socket::sockopt::RcvBufForce,
            &ADVERT_RECEIVE_BUFFER,
        )
        .is_err()
        {
            receive.set_recv_buffer_size(ADVERT_RECEIVE_BUFFER)?;
        }
        match source {
            IpAddr::V4(_) => {
                receive.join_multicast_v4_n(
                    &VRRP_MULTICAST_V4,
                    &InterfaceIndexOrAddress::Index(interface_index),
                )?;
            }
            IpAddr::V6(_) => {
                receive.join_multicast_v6(&VRRP_MULTICAST_V6, interface_index)?;
                // The IPv6 header is not delivered: ask for the hop limit and
                // destination as control messages (RFC 5798 §7.1 needs both).
                nix::sys::socket::setsockopt(
                    &receive,
                    nix::sys::socket::sockopt::Ipv6RecvHopLimit,
                    &true,
                )?;
                nix::sys::socket::setsockopt(
                    &receive,
                    nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
                    &true,
                )?;
            }
        }

        let send = Socket::new(domain, Type::RAW, protocol)?;
        send.bind_device(Some(interface.as_bytes()))?;
        send.set_nonblocking(true)?;
        // This socket only sends: a filter that accepts nothing keeps its queue empty.
        send.attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])?;
        match source {
            IpAddr::V4(v4) => {
                send.bind(&SockAddr::from(SocketAddr::new(IpAddr::V4(v4), 0)))?;
                // No IP_MULTICAST_IF: the bound device is the output interface
                // already, and with `use_vmac` the source belongs to the base
                // interface, not to the bound macvlan (the kernel refuses that pair).
                // RFC 5798 §5.1.1.3: TTL 255, for multicast and unicast alike.
                send.set_multicast_ttl_v4(u32::from(VRRP_TTL))?;
                send.set_ttl_v4(u32::from(VRRP_TTL))?;
                send.set_multicast_loop_v4(false)?;
                send.set_tos_v4(TOS_NETWORK_CONTROL)?;
            }
            IpAddr::V6(v6) => {
                let scope = if is_link_local(v6) {
                    interface_index
                } else {
                    0
                };
                send.bind(&SockAddr::from(SocketAddrV6::new(v6, 0, 0, scope)))?;
                send.set_multicast_if_v6(interface_index)?;
                send.set_multicast_hops_v6(u32::from(VRRP_TTL))?;
                send.set_unicast_hops_v6(u32::from(VRRP_TTL))?;
                send.set_multicast_loop_v6(false)?;
                send.set_tclass_v6(TOS_NETWORK_CONTROL)?;
            }
        }
        // SAFETY: the socket owns its descriptor, which nothing else closes or
        // replaces while the AsyncFd holds it.
        let receive = unsafe { AsyncFd::register_with_interest(receive, Interest::READABLE)? };
        Ok(AdvertSocket {
            receive,
            send,
            interface_index,
            family_v6: source.is_ipv6(),
        })
    }

    /// The group adverts go to when no unicast peer is configured.
    pub fn multicast_group(&self) -> IpAddr {
        if self.family_v6 {
            IpAddr::V6(VRRP_MULTICAST_V6)
        } else {
            IpAddr::V4(VRRP_MULTICAST_V4)
        }
    }

    /// Sends one VRRP message to `destination`.
    pub fn send(&self, message: &[u8], destination: IpAddr) -> io::Result<()> {
        let address = match destination {
            IpAddr::V4(v4) => SockAddr::from(SocketAddr::new(IpAddr::V4(v4), 0)),
            IpAddr::V6(v6) => {
                let scope = if is_link_local(v6) || v6.is_multicast() {
                    self.interface_index
                } else {
                    0
                };
                SockAddr::from(SocketAddrV6::new(v6, 0, 0, scope))
            }
        };
        self.send.send_to(message, &address).map(drop)
    }

    /// Takes a packet that is already queued, without waiting: `None` when the queue
    /// is empty. Its VRRP message lands in `buffer[payload]`.
    pub fn try_receive(&self, buffer: &mut [u8]) -> Option<Result<ReceivedAdvert, ReceiveError>> {
        let socket = self.receive.get_ref();
        let result = if self.family_v6 {
            receive_v6(socket, buffer)
        } else {
            receive_v4(socket, buffer)
        };
        match result {
            Ok(received) => Some(received),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => Some(Err(ReceiveError::Io(e))),
        }
    }

    /// Waits for the next VRRP packet; its VRRP message lands in `buffer[payload]`.
    pub async fn receive(&self, buffer: &mut [u8]) -> Result<ReceivedAdvert, ReceiveError> {
        loop {
            let mut guard = self.receive.readable().await.map_err(ReceiveError::Io)?;
            let result = if self.family_v6 {
                guard.try_io(|fd| receive_v6(fd.get_ref(), buffer))
            } else {
                guard.try_io(|fd| receive_v4(fd.get_ref(), buffer))
            };
            match result {
                Ok(Ok(received)) => return received,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(ReceiveError::Io(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

fn is_link_local(address: Ipv6Addr) -> bool {
    address.segments()[0] & 0xffc0 == 0xfe80
}

/// IPv4 raw sockets deliver the IP header: TTL and addresses come from it.
fn receive_v4(
    socket: &Socket,
    buffer: &mut [u8],
) -> io::Result<Result<ReceivedAdvert, ReceiveError>> {
    // SAFETY: MaybeUninit<u8> has the layout of u8 and recv only writes into it.
    let uninit = unsafe { &mut *(buffer as *mut [u8] as *mut [MaybeUninit<u8>]) };
    let length = socket.recv(uninit)?;
    let datagram = &buffer[..length];
    Ok(match Ipv4Repr::parse(datagram) {
        Ok((header, payload)) => {
            let start = payload.as_ptr() as usize - datagram.as_ptr() as usize;
            Ok(ReceivedAdvert {
                source: IpAddr::V4(header.src_addr),
                destination: IpAddr::V4(header.dst_addr),
                ttl: header.ttl,
                payload: start..start + payload.len(),
            })
        }
        Err(e) => Err(ReceiveError::BadIpHeader(e.as_str())),
    })
}

/// IPv6 raw sockets deliver the payload only: hop limit and destination come as
/// control messages.
fn receive_v6(
    socket: &Socket,
    buffer: &mut [u8],
) -> io::Result<Result<ReceivedAdvert, ReceiveError>> {
    let mut control = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
    let mut iov = [io::IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )?;
    let length = message.bytes;
    let source = message
        .address
        .map(|a| IpAddr::V6(a.ip()))
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let mut ttl = 0;
    let mut destination = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        match cmsg {
            ControlMessageOwned::Ipv6HopLimit(limit) => ttl = u8::try_from(limit).unwrap_or(0),
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                destination = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))
            }
            _ => {}
        }
    }
    Ok(Ok(ReceivedAdvert {
        source,
        destination,
        ttl,
        payload: 0..length,
    }))
}

/// A send-only packet socket for announcement frames.
pub struct FrameSocket {
    socket: Socket,
    interface_index: u32,
}

impl FrameSocket {
    /// Opens it for interface `interface_index`. Protocol 0: it receives nothing.
    pub fn open(interface_index: u32) -> io::Result<FrameSocket> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.set_nonblocking(true)?;
        Ok(FrameSocket {
            socket,
            interface_index,
        })
    }

    /// Sends a whole Ethernet frame (destination MAC in its first six bytes).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        send_frame(&self.socket, self.interface_index, frame)
    }
}

/// Sends a whole Ethernet frame out of interface `interface_index` through a packet
/// socket, to the destination MAC in its first six bytes.
fn send_frame(socket: &Socket, interface_index: u32, frame: &[u8]) -> io::Result<()> {
    if frame.len() < 14 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "short frame"));
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
    link.sll_ifindex = interface_index as i32;
    link.sll_halen = 6;
    link.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: the pointer and length describe the sockaddr_ll above.
    let rc = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&link as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `sll_pkttype` of frames this host sent itself.
const PACKET_OUTGOING: u8 = 4;

/// A packet socket for the ARP frames of one interface: it sends whole ARP frames
/// (requests of the DR real-server ARP check) and receives the ARP frames that
/// arrive from the wire on that interface.
pub struct ArpSocket {
    socket: AsyncFd<Socket>,
    interface_index: u32,
}

impl ArpSocket {
    /// Opens it on interface `interface_index`. Created with protocol 0
    /// (receiving nothing) and bound with ETH_P_ARP and the interface at once,
    /// so no frame of another interface is ever queued.
    pub fn open(interface_index: u32) -> io::Result<ArpSocket> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_protocol = ETHERTYPE_ARP.to_be();
        link.sll_ifindex = interface_index as i32;
        // SAFETY: the pointer and length describe the sockaddr_ll above.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&link as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the socket owns its descriptor, which nothing else closes or
        // replaces while the AsyncFd holds it.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
        Ok(ArpSocket {
            socket,
            interface_index,
        })
    }

    /// The interface it is bound to.
    pub fn interface_index(&self) -> u32 {
        self.interface_index
    }

    /// Sends a whole ARP frame (destination MAC in its first six bytes).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        send_frame(self.socket.get_ref(), self.interface_index, frame)
    }

    /// Polls for the next ARP frame that arrived from the wire (frames this host
    /// sent are skipped); its length in `buffer` when ready.
    pub fn poll_receive(&self, cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            match guard.try_io(|fd| receive_link(fd.get_ref(), buffer)) {
                Ok(Ok((length, pkttype, index))) => {
                    if pkttype != PACKET_OUTGOING && index == self.interface_index {
                        return Poll::Ready(Ok(length));
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Readiness cleared: the next poll registers the waker.
                Err(_would_block) => {}
            }
        }
    }

    /// Waits for the next ARP frame that arrived from the wire; its length in `buffer`.
    pub async fn receive(&self, buffer: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_receive(cx, buffer)).await
    }
}

/// One `recvfrom` on a packet socket: (length, packet type, interface index).
fn receive_link(socket: &Socket, buffer: &mut [u8]) -> io::Result<(usize, u8, u32)> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buffer and link are valid for writes of the lengths given.
    let rc = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
            (&mut link as *mut libc::sockaddr_ll).cast(),
            &mut length,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rc as usize, link.sll_pkttype, link.sll_ifindex as u32))
}

/// The unspecified address of a family, for logs.
pub fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}
