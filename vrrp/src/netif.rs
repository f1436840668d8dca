//! Interfaces and virtual addresses through rtnetlink.
//!
//! Looks up what the driver needs to know of an interface (index, MAC, its own
//! addresses, link state) and adds or removes virtual addresses idempotently:
//! adding an address that is there, or removing one that is not, is success.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec, RouteMessageBuilder};

/// Errors from the kernel's routing netlink.
#[derive(Debug, thiserror::Error)]
pub enum NetifError {
    /// The netlink socket could not be opened.
    #[error("cannot open a routing netlink socket: {0}")]
    Open(#[source] std::io::Error),
    /// No interface of that name.
    #[error("interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Kernel {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

/// What the driver needs to know of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Name, e.g. `eth0`.
    pub name: String,
    /// Kernel index.
    pub index: u32,
    /// Hardware address (all zeros when the link has none).
    pub mac: [u8; 6],
    /// Administratively up and carrier present.
    pub up: bool,
    /// IPv4 addresses with prefix lengths, in kernel order (primary first).
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
}

impl InterfaceInfo {
    /// The first IPv6 link-local address (the source of VRRPv3 adverts, RFC 5798 §5.1.2.1).
    pub fn ipv6_link_local(&self) -> Option<Ipv6Addr> {
        self.ipv6
            .iter()
            .map(|(a, _)| *a)
            .find(|a| a.segments()[0] & 0xffc0 == 0xfe80)
    }
}

/// How an address is added, beyond address and prefix (keepalived's
/// `virtual_ipaddress` entry options, as `ip address add` takes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// IFA_LABEL (IPv4 only): the alias name, e.g. `eth0:1`.
    pub label: Option<String>,
    /// IFA_BROADCAST (IPv4 only); `None` is the prefix's all-ones address.
    pub broadcast: Option<Ipv4Addr>,
    /// The kernel's scope number (RT_SCOPE_*: 0 global, 200 site, 253 link,
    /// 254 host, 255 nowhere); `None` is global.
    pub scope: Option<u8>,
}

/// A route the master installs (keepalived's `virtual_routes` entry), in the
/// kernel's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// RTN_* type: 1 unicast, 6 blackhole, 7 unreachable, 8 prohibit, 9 throw.
    pub kind: u8,
    /// Destination prefix.
    pub destination: IpAddr,
    /// Its length.
    pub prefix_len: u8,
    /// Preferred source (`src`).
    pub source: Option<IpAddr>,
    /// Gateway (`via`).
    pub gateway: Option<IpAddr>,
    /// Output interface by name (`dev`), looked up when the route is added.
    pub device: Option<String>,
    /// RT_SCOPE_*; `None` as `ip route`: link for a unicast route without a
    /// gateway, global otherwise.
    pub scope: Option<u8>,
    /// Routing table; `None` is main (254).
    pub table: Option<u32>,
    /// Metric (RTA_PRIORITY).
    pub metric: Option<u32>,
    /// RTPROT_*; `None` is boot (3), what `ip route` sets.
    pub protocol: Option<u8>,
    /// RTNH_F_ONLINK.
    pub onlink: bool,
}

/// A policy-routing rule the master installs (keepalived's `virtual_rules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// IPv6 (`ip -6 rule`) or IPv4.
    pub ipv6: bool,
    /// Source prefix.
    pub from: Option<(IpAddr, u8)>,
    /// Destination prefix.
    pub to: Option<(IpAddr, u8)>,
    /// Input interface name.
    pub input_interface: Option<String>,
    /// Output interface name.
    pub output_interface: Option<String>,
    /// Firewall mark and mask.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// Position (FRA_PRIORITY).
    pub priority: Option<u32>,
    /// The table it looks up; `None` is main (254).
    pub table: Option<u32>,
}

/// A routing netlink handle bound to the current network namespace.
#[derive(Clone)]
pub struct Netif {
    handle: rtnetlink::Handle,
}

fn kernel_error(what: String, error: rtnetlink::Error) -> NetifError {
    let source = match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    NetifError::Kernel { what, source }
}

fn errno_of(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

impl Netif {
    /// Opens the netlink socket; must be called inside a tokio runtime.
    pub fn new() -> Result<Netif, NetifError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetifError::Open)?;
        tokio::spawn(connection);
        Ok(Netif { handle })
    }

    /// Looks an interface up by name, with its addresses.
    pub async fn interface(&self, name: &str) -> Result<InterfaceInfo, NetifError> {
        let mut info = self.link(name).await?;
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(info.index)
            .execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| kernel_error(format!("listing addresses of {name}"), e))?
        {
            match local_address(&message) {
                Some(IpAddr::V4(a)) => info.ipv4.push((a, message.header.prefix_len)),
                Some(IpAddr::V6(a)) => info.ipv6.push((a, message.header.prefix_len)),
                None => {}
            }
        }
        Ok(info)
    }

    /// Looks an interface up by name: one request, its address lists left empty (listing
    /// the addresses dumps every address of the namespace, filtered here: at thousands of
    /// addresses, the cost of a read that needs only the link's state).
    pub async fn link(&self, name: &str) -> Result<InterfaceInfo, NetifError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link_info(name, &link)),
            Ok(None) => Err(NetifError::NoSuchInterface(name.to_owned())),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => {
                Err(NetifError::NoSuchInterface(name.to_owned()))
            }
            Err(e) => Err(kernel_error(format!("looking up interface {name}"), e)),
        }
    }

    /// Adds `address/prefix_len` with `options` to interface `index`;
    /// `Ok(false)` if it was there.
    pub async fn add_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
        options: &AddressOptions,
    ) -> Result<bool, NetifError> {
        let mut request = self.handle.address().add(index, address, prefix_len);
        let message = request.message_mut();
        if let Some(label) = &options.label {
            message
                .attributes
                .push(AddressAttribute::Label(label.clone()));
        }
        if let Some(broadcast) = options.broadcast {
            message
                .attributes
                .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        if let Some(scope) = options.scope {
            message.header.scope = scope.into();
        }
        if address.is_ipv6() {
            // No duplicate address detection: the address must work at once
            // after a takeover (keepalived adds its IPv6 VIPs the same way).
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(kernel_error(format!("adding {address}/{prefix_len}"), e)),
        }
    }

    /// The kernel's message for `route`; looks its `dev` up.
    async fn route_message(&self, route: &RouteSpec) -> Result<RouteMessage, NetifError> {
        fn invalid(route: &RouteSpec, e: impl std::fmt::Display) -> NetifError {
            NetifError::Kernel {
                what: format!(
                    "building the route to {}/{}",
                    route.destination, route.prefix_len
                ),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            }
        }
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.destination, route.prefix_len)
            .map_err(|e| invalid(route, e))?;
        if let Some(source) = route.source {
            builder = builder.pref_source(source).map_err(|e| invalid(route, e))?;
        }
        if let Some(gateway) = route.gateway {
            builder = builder.gateway(gateway).map_err(|e| invalid(route, e))?;
        }
        if let Some(device) = &route.device {
            builder = builder.output_interface(self.interface(device).await?.index);
        }
        let default_scope = if route.kind == 1 && route.gateway.is_none() {
            253
        } else {
            0
        };
        builder = builder
            .table_id(route.table.unwrap_or(254))
            .kind(RouteType::from(route.kind))
            .scope(RouteScope::from(route.scope.unwrap_or(default_scope)))
            .protocol(RouteProtocol::from(route.protocol.unwrap_or(3)));
        if let Some(metric) = route.metric {
            builder = builder.priority(metric);
        }
        if route.onlink {
            builder = builder.onlink();
        }
        Ok(builder.build())
    }

    /// Adds `route`; `Ok(false)` if it was there.
    pub async fn add_route(&self, route: &RouteSpec) -> Result<bool, NetifError> {
        let message = self.route_message(route).await?;
        match self.handle.route().add(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(kernel_error(
                format!(
                    "adding the route to {}/{}",
                    route.destination, route.prefix_len
                ),
                e,
            )),
        }
    }

    /// Removes `route`; `Ok(false)` if it was not there (the kernel drops a
    /// route whose `src` address went away by itself).
    pub async fn remove_route(&self, route: &RouteSpec) -> Result<bool, NetifError> {
        let message = match self.route_message(route).await {
            Ok(message) => message,
            // Its interface is gone, and with it the route.
            Err(NetifError::NoSuchInterface(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno_of(&e), Some(libc::ESRCH | libc::ENOENT)) => Ok(false),
            Err(e) => Err(kernel_error(
                format!(
                    "removing the route to {}/{}",
                    route.destination, route.prefix_len
                ),
                e,
            )),
        }
    }

    /// The kernel's message for `rule`.
    fn rule_message(&self, rule: &RuleSpec) -> RuleMessage {
        let mut request = self
            .handle
            .rule()
            .add()
            .table_id(rule.table.unwrap_or(254))
            .action(RuleAction::ToTable);
        if let Some(priority) = rule.priority {
            request = request.priority(priority);
        }
        if let Some(iif) = &rule.input_interface {
            request = request.input_interface(iif.clone());
        }
        if let Some(oif) = &rule.output_interface {
            request = request.output_interface(oif.clone());
        }
        let mut message = request.message_mut().clone();
        message.header.family = if rule.ipv6 {
            netlink_packet_route::AddressFamily::Inet6
        } else {
            netlink_packet_route::AddressFamily::Inet
        };
        if let Some((from, len)) = rule.from {
            message.header.src_len = len;
            message.attributes.push(RuleAttribute::Source(from));
        }
        if let Some((to, len)) = rule.to {
            message.header.dst_len = len;
            message.attributes.push(RuleAttribute::Destination(to));
        }
        if let Some((mark, mask)) = rule.fwmark {
            message.attributes.push(RuleAttribute::FwMark(mark));
            if let Some(mask) = mask {
                message.attributes.push(RuleAttribute::FwMask(mask));
            }
        }
        message
    }

    /// Adds `rule`; `Ok(false)` if the same rule was there.
    pub async fn add_rule(&self, rule: &RuleSpec) -> Result<bool, NetifError> {
        let message = self.rule_message(rule);
        let mut request = self.handle.rule().add();
        *request.message_mut() = message;
        match request.execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(kernel_error("adding a routing rule".to_owned(), e)),
        }
    }

    /// Removes `rule`; `Ok(false)` if it was not there.
    pub async fn remove_rule(&self, rule: &RuleSpec) -> Result<bool, NetifError> {
        let message = self.rule_message(rule);
        match self.handle.rule().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno_of(&e), Some(libc::ENOENT | libc::ESRCH)) => Ok(false),
            Err(e) => Err(kernel_error("removing a routing rule".to_owned(), e)),
        }
    }

    /// Creates macvlan `name` (mode private, MAC `mac`, down) on interface
    /// `base` unless an interface of that name exists; `Ok(true)` if created.
    pub async fn ensure_macvlan(
        &self,
        name: &str,
        base: u32,
        mac: [u8; 6],
    ) -> Result<bool, NetifError> {
        match self.interface(name).await {
            Ok(_) => return Ok(false),
            Err(NetifError::NoSuchInterface(_)) => {}
            Err(e) => return Err(e),
        }
        let message = LinkMacVlan::new(name, base, MacVlanMode::Private)
            .address(mac.to_vec())
            .build();
        match self.handle.link().add(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(kernel_error(format!("creating macvlan {name}"), e)),
        }
    }

    /// Sets interface `index` up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetifError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| kernel_error(format!("setting interface {index} up"), e))
    }

    /// Deletes interface `name`; `Ok(false)` if it was not there.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetifError> {
        let index = match self.interface(name).await {
            Ok(info) => info.index,
            Err(NetifError::NoSuchInterface(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(kernel_error(format!("deleting interface {name}"), e)),
        }
    }

    /// Removes `address/prefix_len` from interface `index` in one request, without listing
    /// the addresses first (as [`Self::remove_address`] must to learn the prefix length);
    /// `Ok(false)` if it was not there.
    pub async fn remove_exact_address(
        &self,
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<bool, NetifError> {
        // The message an add of the same address would send names it exactly.
        let message = self
            .handle
            .address()
            .add(index, address, prefix_len)
            .message_mut()
            .clone();
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno_of(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => Ok(false),
            Err(e) => Err(kernel_error(format!("removing {address}/{prefix_len}"), e)),
        }
    }

    /// Removes `address` (any prefix length) from interface `index`; `Ok(false)` if absent.
    pub async fn remove_address(&self, index: u32, address: IpAddr) -> Result<bool, NetifError> {
        let mut found = Vec::new();
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(address)
            .execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|e| kernel_error(format!("looking for {address}"), e))?
        {
            found.push(message);
        }
        let mut removed = false;
        for message in found {
            match self.handle.address().del(message).execute().await {
                Ok(()) => removed = true,
                Err(e) if matches!(errno_of(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {}
                Err(e) => return Err(kernel_error(format!("removing {address}"), e)),
            }
        }
        Ok(removed)
    }
}

fn link_info(name: &str, link: &LinkMessage) -> InterfaceInfo {
    let mut mac = [0; 6];
    for attribute in &link.attributes {
        if let LinkAttribute::Address(bytes) = attribute {
            if bytes.len() == 6 {
                mac.copy_from_slice(bytes);
            }
        }
    }
    let flags = link.header.flags;
    InterfaceInfo {
        name: name.to_owned(),
        index: link.header.index,
        mac,
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    }
}

/// The interface's own address of an RTM_NEWADDR message (IFA_LOCAL for IPv4).
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}
