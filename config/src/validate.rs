//! Semantic validation: turns a front-end's [`Draft`] into a [`Model`], checking
//! every range and cross-field rule and collecting every violation, each at the
//! place it was written. This is the one place the rules live, whichever
//! front-end read the file.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::draft::{AuthDraft, Draft, InstanceDraft, Located};
use crate::draft::{NotifyDraft, ScriptsDraft, SyncGroupDraft, TrackEntryDraft};
use crate::error::{ConfigError, ConfigErrors, Loc};
use crate::model::{AddressFamily, Authentication, Model, VrrpInstance, VrrpVersion};
use crate::model::{NotifyScripts, ScriptSettings, SyncGroup, TrackedInterface};
use crate::virtual_ip::{VirtualIp, Vmac};

/// keepalived's default advert interval, in seconds.
const DEFAULT_ADVERT_INT_SECS: f64 = 1.0;
/// keepalived's default `garp_master_delay`, in seconds.
const DEFAULT_GARP_MASTER_DELAY_SECS: u32 = 5;
/// keepalived's default `garp_master_repeat`.
const DEFAULT_GARP_MASTER_REPEAT: u32 = 5;
/// Longest `preempt_delay` keepalived accepts, in seconds.
const MAX_PREEMPT_DELAY_SECS: u64 = 1000;
/// RFC 2338 §5.3.10: the simple-text password fills an 8-byte field.
const MAX_AUTH_PASS_BYTES: usize = 8;
/// Linux IFNAMSIZ minus the terminating NUL.
pub(crate) const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Validates `draft`; `errors` are the front-end's errors, which are reported
/// together with the ones found here.
pub(crate) fn validate(
    mut draft: Draft,
    mut errors: Vec<ConfigError>,
) -> Result<Model, ConfigErrors> {
    let default_version = draft
        .default_version
        .as_ref()
        .and_then(|v| version(&mut errors, "vrrp_version", v));
    if draft.instances.is_empty() && draft.virtual_servers.is_empty() {
        errors.push(ConfigError::whole_file(
            draft.file,
            "nothing to run: add at least one [[vrrp_instance]] or [[virtual_server]] table",
        ));
    }
    let router_id = draft.router_id.as_ref().and_then(|id| {
        let valid = !id.value.is_empty() && !id.value.contains(char::is_control);
        if !valid {
            push(
                &mut errors,
                &id.loc,
                format!(
                    "router_id = {:?}: give a non-empty name without control characters, e.g. \"lvs-a\"",
                    id.value
                ),
            );
        }
        valid.then(|| id.value.clone())
    });
    let scripts = script_settings(&mut errors, &draft.scripts);
    let mut seen = Seen::default();
    let mut instances: Vec<Option<VrrpInstance>> = draft
        .instances
        .iter()
        .map(|d| instance(&mut errors, &mut seen, d, default_version))
        .collect();
    // Each virtual server's draft goes as soon as it is validated.
    let virtual_servers = crate::validate_ipvs::virtual_servers(
        &mut errors,
        std::mem::take(&mut draft.virtual_servers),
        &draft.scripts,
    );
    let vrrp_scripts =
        crate::validate_health::vrrp_scripts(&mut errors, &draft.vrrp_scripts, &draft.scripts);
    crate::validate_health::track_scripts(
        &mut errors,
        &draft.instances,
        &mut instances,
        &draft.vrrp_scripts,
        &vrrp_scripts,
    );
    let track_files = crate::track_file::track_files(&mut errors, &draft.track_files);
    crate::track_file::tracked_files(
        &mut errors,
        &draft.instances,
        &mut instances,
        &draft.track_files,
        &track_files,
    );
    let track_processes =
        crate::track_process::track_processes(&mut errors, &draft.track_processes);
    crate::track_process::tracked_processes(
        &mut errors,
        &draft.instances,
        &mut instances,
        &draft.track_processes,
        &track_processes,
    );
    let sync_groups = sync_groups(&mut errors, &draft.sync_groups, &draft.instances);
    notify_scripts_run(&mut errors, &draft, &scripts);
    let notify_fifos = crate::notify_fifo::notify_fifos(&mut errors, &draft.notify_fifos, &scripts);
    let lvs_sync_daemon = draft
        .lvs_sync_daemon
        .as_ref()
        .and_then(|d| crate::lvs_sync::validate(&mut errors, d, &draft.instances));
    let statics = statics(&mut errors, &draft);
    let lvs_timeouts = match &draft.lvs_timeouts {
        Some(words) => match crate::model::LvsTimeouts::from_words(&words.value) {
            Ok(timeouts) => Some(timeouts),
            Err(e) => {
                push(&mut errors, &words.loc, e);
                None
            }
        },
        None => Some(crate::model::LvsTimeouts::default()),
    };
    let announce = draft
        .announce
        .as_ref()
        .and_then(|d| crate::announce::validate(&mut errors, d, &virtual_servers, &instances));
    if errors.is_empty() {
        let vrrp_instances = instances.into_iter().flatten().collect();
        Ok(Model {
            router_id,
            scripts,
            vrrp_instances,
            virtual_servers,
            vrrp_scripts,
            sync_groups,
            lvs_sync_daemon,
            track_files,
            track_processes,
            dynamic_interfaces: draft.dynamic_interfaces.as_ref().is_some_and(|d| d.value),
            statics: statics.unwrap_or_default(),
            lvs_timeouts: lvs_timeouts.unwrap_or_default(),
            notify_fifos,
            announce,
        })
    } else {
        Err(ConfigErrors::sorted(errors))
    }
}

/// What earlier instances already claimed, for the uniqueness rules.
#[derive(Default)]
struct Seen {
    /// Instance name → where the instance starts.
    names: HashMap<String, Loc>,
    /// (interface, VRID, family) → name and start of the instance that has it.
    routers: HashMap<(String, u8, AddressFamily), (String, Loc)>,
}

pub(crate) fn push(errors: &mut Vec<ConfigError>, loc: &Loc, message: impl Into<String>) {
    errors.push(ConfigError::at(loc, message));
}

/// Validates one instance; `None` if anything about it is wrong (all reported).
fn instance(
    errors: &mut Vec<ConfigError>,
    seen: &mut Seen,
    d: &InstanceDraft,
    default_version: Option<VrrpVersion>,
) -> Option<VrrpInstance> {
    let errors_before = errors.len();
    let title = match &d.name {
        Some(name) => format!("vrrp_instance {:?}", name.value),
        None => "this vrrp_instance".to_owned(),
    };
    for (key, example) in [
        ("name", "name = \"VI_1\""),
        ("interface", "interface = \"eth0\""),
        ("virtual_router_id", "virtual_router_id = 51"),
        ("priority", "priority = 100"),
        (
            "virtual_ipaddress",
            "virtual_ipaddress = [\"192.0.2.10/24\"]",
        ),
    ] {
        if !d.present.contains(&key) {
            // keepalived allows an instance without addresses (notify scripts
            // then move a cloud address), but its adverts would carry a count
            // of 0, below RFC 5798 §5.2.5's minimum of 1.
            let why = if key == "virtual_ipaddress" {
                " (an instance without addresses is not supported: its adverts would carry an address count of 0, and RFC 5798 §5.2.5 sets the minimum to 1)"
            } else {
                ""
            };
            push(
                errors,
                &d.loc,
                format!("{title} is missing `{key}`; add e.g. `{example}`{why}"),
            );
        }
    }

    let name = d.name.as_ref().and_then(|name| {
        if name.value.is_empty() {
            push(errors, &name.loc, "name = \"\": give the instance a non-empty name");
            return None;
        }
        if let Some(first) = seen.names.get(&name.value) {
            push(
                errors,
                &name.loc,
                format!(
                    "name = {:?}: already used by the vrrp_instance at {first}; give each instance its own name",
                    name.value
                ),
            );
        } else {
            seen.names.insert(name.value.clone(), d.loc);
        }
        Some(name.value.clone())
    });

    let interface = d.interface.as_ref().and_then(|ifname| {
        let valid = is_interface_name(&ifname.value);
        if !valid {
            push(
                errors,
                &ifname.loc,
                format!(
                    "interface = {:?}: not a Linux interface name; use 1..={MAX_INTERFACE_NAME_BYTES} bytes without spaces or '/'",
                    ifname.value
                ),
            );
        }
        valid.then(|| ifname.value.clone())
    });

    let virtual_router_id = d.virtual_router_id.as_ref().and_then(|vrid| {
        let n = in_range(
            errors,
            "virtual_router_id",
            vrid,
            1..=255,
            "must be 1..=255, the same on every router of this virtual router",
        )?;
        Some((n as u8, &vrid.loc))
    });

    let priority = d.priority.as_ref().and_then(|p| {
        let priority = in_range(
            errors,
            "priority",
            p,
            1..=255,
            "must be 1..=255 (255 only for the address owner)",
        )?;
        Some((priority as u8, &p.loc))
    });

    let mut seen_addresses = HashMap::new();
    let (family, virtual_ipaddress) = match &d.virtual_ipaddress {
        Some(list) => virtual_addresses(errors, list, &mut seen_addresses),
        None => (None, None),
    };
    // keepalived.conf(5): excluded addresses are not in adverts, so either family goes.
    let virtual_ipaddress_excluded = match &d.virtual_ipaddress_excluded {
        Some(list) => virtual_ip_entries(
            errors,
            "virtual_ipaddress_excluded",
            list,
            &mut seen_addresses,
            |_, _, _| {},
        ),
        None => Some(Vec::new()),
    };

    let explicit_version = d
        .version
        .as_ref()
        .and_then(|v| Some((version(errors, "version", v)?, &v.loc)));
    let version = match (explicit_version, family) {
        // RFC 3768 (VRRPv2) is IPv4-only; RFC 5798 (VRRPv3) adds IPv6.
        (Some((VrrpVersion::V2, loc)), Some(AddressFamily::Ipv6)) => {
            push(
                errors,
                loc,
                "version = 2: IPv6 virtual addresses need VRRP version 3 (RFC 3768 covers IPv4 only); set version = 3",
            );
            None
        }
        (Some((v, _)), _) => Some(v),
        // The global default cannot make an IPv6 instance speak version 2.
        (None, Some(AddressFamily::Ipv6)) => Some(VrrpVersion::V3),
        (None, _) => Some(default_version.unwrap_or(VrrpVersion::V2)),
    };

    let advert_int_centis = version.and_then(|v| advert_int(errors, d.advert_int.as_ref(), v));

    let nopreempt = d.nopreempt.as_ref();
    if let (Some(nopreempt), Some((255, priority_loc))) = (nopreempt, priority) {
        if nopreempt.value {
            // RFC 5798 §6.1: the address owner always preempts, whatever Preempt_Mode says.
            push(
                errors,
                &nopreempt.loc,
                format!(
                    "nopreempt = true: contradicts priority = 255 at {priority_loc}; the address owner always preempts (RFC 5798 §6.1); lower the priority or remove nopreempt"
                ),
            );
        }
    }
    let preempt = !nopreempt.is_some_and(|n| n.value);

    let preempt_delay_secs = whole_seconds(
        errors,
        "preempt_delay",
        d.preempt_delay.as_ref(),
        0,
        MAX_PREEMPT_DELAY_SECS,
    )
    .map(|s| s as u16);
    let accept = d.accept.as_ref().is_none_or(|a| a.value);

    let unicast_src_ip = d
        .unicast_src_ip
        .as_ref()
        .map(|ip| ip_address(errors, "unicast_src_ip =", ip, family));
    let unicast_peer = d
        .unicast_peer
        .as_ref()
        .map(|peers| unicast_peers(errors, peers, family));

    let garp_master_delay_secs = whole_seconds(
        errors,
        "garp_master_delay",
        d.garp_master_delay.as_ref(),
        0,
        u32::MAX.into(),
    )
    .map_or(DEFAULT_GARP_MASTER_DELAY_SECS, |s| s as u32);
    let garp_master_repeat = packet_count(
        errors,
        "garp_master_repeat",
        d.garp_master_repeat.as_ref(),
        DEFAULT_GARP_MASTER_REPEAT,
        "burst",
    );
    // keepalived.conf(5): one gratuitous ARP per refresh unless told otherwise.
    let garp_master_refresh_repeat = packet_count(
        errors,
        "garp_master_refresh_repeat",
        d.garp_master_refresh_repeat.as_ref(),
        1,
        "refresh",
    );
    let garp_master_refresh_secs = whole_seconds(
        errors,
        "garp_master_refresh",
        d.garp_master_refresh.as_ref(),
        0,
        u32::MAX.into(),
    )
    .map(|s| s as u32);
    let garp_interval_millis = garp_interval(errors, d.garp_interval.as_ref());

    let authentication = d
        .authentication
        .as_ref()
        .map(|auth| authentication(errors, auth, version));
    let auth_hmac = d.auth_hmac.as_ref().map(|auth| {
        let legacy = d.authentication.as_ref().map(|a| &a.loc);
        crate::auth_hmac::validate(errors, auth, legacy)
    });

    if let (Some(interface), Some((vrid, loc)), Some(family)) =
        (&interface, virtual_router_id, family)
    {
        let key = (interface.clone(), vrid, family);
        if let Some((other, other_loc)) = seen.routers.get(&key) {
            push(
                errors,
                loc,
                format!(
                    "virtual_router_id = {vrid}: already used on {interface} for {family} by vrrp_instance {other:?} at {other_loc}; pick a different virtual_router_id"
                ),
            );
        } else {
            let owner = name.clone().unwrap_or_default();
            seen.routers.insert(key, (owner, d.loc));
        }
    }

    let use_vmac = vmac(errors, d, virtual_router_id.map(|v| v.0), family);
    let notify = notify_scripts(errors, &d.notify);
    let track_interface = d
        .track_interface
        .as_ref()
        .map(|list| track_interfaces(errors, list, d.priority.as_ref()));

    if errors.len() > errors_before {
        return None;
    }
    Some(VrrpInstance {
        name: name?,
        interface: interface?,
        virtual_router_id: virtual_router_id?.0,
        priority: priority?.0,
        advert_int_centis: advert_int_centis?,
        version: version?,
        family: family?,
        virtual_ipaddress: virtual_ipaddress?,
        virtual_ipaddress_excluded: virtual_ipaddress_excluded?,
        virtual_routes: parsed_entries(errors, "virtual_routes", &d.virtual_routes)?,
        virtual_rules: parsed_entries(errors, "virtual_rules", &d.virtual_rules)?,
        use_vmac,
        vmac_xmit_base: d.vmac_xmit_base.as_ref().is_some_and(|x| x.value),
        preempt,
        preempt_delay_secs: preempt_delay_secs.unwrap_or(0),
        accept,
        unicast_src_ip: unicast_src_ip.flatten(),
        unicast_peer: unicast_peer.flatten().unwrap_or_default(),
        garp_master_delay_secs,
        garp_master_repeat: garp_master_repeat?,
        garp_master_refresh_secs: garp_master_refresh_secs.unwrap_or(0),
        garp_master_refresh_repeat: garp_master_refresh_repeat?,
        garp_interval_millis: garp_interval_millis.unwrap_or(0),
        authentication: authentication.flatten(),
        auth_hmac: auth_hmac.flatten(),
        notify,
        // Filled by validate_health::track_scripts once every script is known.
        track_script: Vec::new(),
        track_interface: track_interface.flatten().unwrap_or_default(),
        // Filled by track_file::tracked_files once every block is known.
        track_file: Vec::new(),
        // Filled by track_process::tracked_processes once every block is known.
        track_process: Vec::new(),
        loc: d.loc,
    })
}

/// Whether `name` can be a Linux interface name.
pub(crate) fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME_BYTES
        && !name.contains(|c: char| c == '/' || c.is_whitespace())
}

/// What `track_interface` refers to, for the shared owner message.
const INTERFACES: TrackedKind = TrackedKind {
    keyword: "track_interface",
    item: "interface",
    block: "interface",
    items: "interfaces",
    weight_zero: "FAULT while down",
};

/// Largest `track_interface` weight (keepalived's range).
const MAX_INTERFACE_WEIGHT: i64 = 253;

/// `track_interface`: interface names, each once, weights in range; an address owner
/// (priority 255) cannot be moved by a weight, so only weight 0 is allowed there.
fn track_interfaces(
    errors: &mut Vec<ConfigError>,
    list: &Located<Vec<TrackEntryDraft>>,
    priority: Option<&Located<i64>>,
) -> Option<Vec<TrackedInterface>> {
    let errors_before = errors.len();
    let mut seen: HashMap<&str, &Loc> = HashMap::new();
    let mut tracked = Vec::with_capacity(list.value.len());
    for entry in &list.value {
        let Some(name) = &entry.name else {
            continue;
        };
        if !is_interface_name(&name.value) {
            push(
                errors,
                &name.loc,
                format!(
                    "track_interface entry {:?}: not a Linux interface name; use 1..={MAX_INTERFACE_NAME_BYTES} bytes without spaces or '/'",
                    name.value
                ),
            );
            continue;
        }
        if let Some(earlier) = seen.insert(&name.value, &name.loc) {
            push(
                errors,
                &name.loc,
                format!(
                    "track_interface entry {:?}: already listed at {earlier}; list each interface once",
                    name.value
                ),
            );
            continue;
        }
        let weight = match &entry.weight {
            Some(w) => match in_range(
                errors,
                "weight",
                w,
                -MAX_INTERFACE_WEIGHT..=MAX_INTERFACE_WEIGHT,
                "must be -253..=253 (0: the interface down puts the instance in FAULT)",
            ) {
                Some(w) => w as i32,
                None => continue,
            },
            None => 0,
        };
        let weighted = (weight != 0).then_some((name.value.as_str(), weight));
        if owner_weight(errors, &INTERFACES, &name.loc, priority, weighted) {
            continue;
        }
        tracked.push(TrackedInterface {
            name: name.value.clone(),
            weight,
            reverse: entry.reverse.as_ref().is_some_and(|r| r.value),
        });
    }
    (errors.len() == errors_before).then_some(tracked)
}

/// The `vrrp_sync_group`s: unique names, at least two members (keepalived
/// reports a group of one or none as a configuration error too), every
/// member a defined instance, each instance in at most one group.
fn sync_groups(
    errors: &mut Vec<ConfigError>,
    drafts: &[SyncGroupDraft],
    instances: &[InstanceDraft],
) -> Vec<SyncGroup> {
    let defined: Vec<&str> = instances
        .iter()
        .filter_map(|i| i.name.as_ref().map(|n| n.value.as_str()))
        .collect();
    let mut names: HashMap<&str, &Loc> = HashMap::new();
    // Instance name → (group, where it was listed).
    let mut membership: HashMap<&str, (&str, &Loc)> = HashMap::new();
    let mut groups = Vec::with_capacity(drafts.len());
    for d in drafts {
        let errors_before = errors.len();
        let title = match &d.name {
            Some(name) => format!("vrrp_sync_group {:?}", name.value),
            None => "this vrrp_sync_group".to_owned(),
        };
        for (key, example) in [
            ("name", "name = \"VG_1\""),
            ("group", "group = [\"VI_1\", \"VI_2\"]"),
        ] {
            if !d.present.contains(&key) {
                push(
                    errors,
                    &d.loc,
                    format!("{title} is missing `{key}`; add e.g. `{example}`"),
                );
            }
        }
        let group_name = d.name.as_ref().and_then(|name| {
            if name.value.is_empty() || name.value.contains(char::is_control) {
                push(
                    errors,
                    &name.loc,
                    format!(
                        "name = {:?}: give the sync group a non-empty name without control characters",
                        name.value
                    ),
                );
                return None;
            }
            if let Some(first) = names.get(name.value.as_str()) {
                push(
                    errors,
                    &name.loc,
                    format!(
                        "name = {:?}: already used by the vrrp_sync_group at {first}; give each sync group its own name",
                        name.value
                    ),
                );
            } else {
                names.insert(&name.value, &name.loc);
            }
            Some(name.value.clone())
        });
        let label: &str = d.name.as_ref().map_or("?", |n| n.value.as_str());
        if let Some(list) = &d.group {
            if list.value.len() < 2 {
                push(
                    errors,
                    &list.loc,
                    format!(
                        "{title}: group lists {} instance(s); a sync group needs at least two (keepalived rejects smaller ones too), e.g. [\"VI_1\", \"VI_2\"]",
                        list.value.len()
                    ),
                );
            }
            for member in &list.value {
                if !defined.contains(&member.value.as_str()) {
                    push(
                        errors,
                        &member.loc,
                        format!(
                            "group entry {:?}: no vrrp_instance has this name; defined: {}",
                            member.value,
                            if defined.is_empty() {
                                "none".to_owned()
                            } else {
                                defined.join(", ")
                            }
                        ),
                    );
                    continue;
                }
                match membership.get(member.value.as_str()) {
                    Some((other, at)) => {
                        let where_ = if *other == label && group_name.is_some() {
                            "this group".to_owned()
                        } else {
                            format!("vrrp_sync_group {other:?}")
                        };
                        push(
                            errors,
                            &member.loc,
                            format!(
                                "group entry {:?}: already in {where_} (listed at {at}); an instance belongs to at most one sync group, listed once",
                                member.value
                            ),
                        );
                    }
                    None => {
                        membership.insert(&member.value, (label, &member.loc));
                    }
                }
            }
        }
        let notify = notify_scripts(errors, &d.notify);
        if errors.len() > errors_before {
            continue;
        }
        if let (Some(name), Some(list)) = (group_name, &d.group) {
            groups.push(SyncGroup {
                name,
                members: list.value.iter().map(|m| m.value.clone()).collect(),
                notify,
                loc: d.loc,
            });
        }
    }
    groups
}

/// `value` if it lies in `range`, else reports `key = value: hint`.
pub(crate) fn in_range(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: &Located<i64>,
    range: std::ops::RangeInclusive<i64>,
    hint: &str,
) -> Option<i64> {
    if range.contains(&value.value) {
        Some(value.value)
    } else {
        push(
            errors,
            &value.loc,
            format!("{key} = {}: {hint}", value.value),
        );
        None
    }
}

/// What an instance's tracking list (`track_script`, `track_file`) refers to, for the
/// messages of [`tracked_name`] and [`owner_weight`].
pub(crate) struct TrackedKind<'a> {
    /// The instance's keyword: `track_script`.
    pub(crate) keyword: &'a str,
    /// One item: `script`.
    pub(crate) item: &'a str,
    /// The block that defines one: `[[vrrp_script]]`.
    pub(crate) block: &'a str,
    /// Several items: `scripts`.
    pub(crate) items: &'a str,
    /// What weight 0 does: `FAULT on failure`.
    pub(crate) weight_zero: &'a str,
}

/// Whether a tracking entry's `name` (the entry written at `entry`) is listed once
/// (`seen` holds the earlier ones) and names one of the `defined` blocks; reported
/// otherwise.
pub(crate) fn tracked_name<'a>(
    errors: &mut Vec<ConfigError>,
    kind: &TrackedKind,
    (entry, name): (&'a Loc, &'a Located<String>),
    defined: &[&str],
    seen: &mut HashMap<&'a str, &'a Loc>,
) -> bool {
    if let Some(first) = seen.insert(&name.value, entry) {
        push(
            errors,
            &name.loc,
            format!(
                "{} {:?}: already listed at {first}; list each {} once",
                kind.keyword, name.value, kind.item
            ),
        );
        return false;
    }
    if !defined.contains(&name.value.as_str()) {
        let known = if defined.is_empty() {
            format!("no {} is defined", kind.block)
        } else {
            format!("defined {}: {}", kind.items, defined.join(", "))
        };
        push(
            errors,
            &name.loc,
            format!(
                "{} {:?}: no {} has this name; {known}",
                kind.keyword, name.value, kind.block
            ),
        );
        return false;
    }
    true
}

/// A block a weighted tracking entry (`track_file`, `track_process`) names: its name,
/// weight and direction, which an entry may override.
pub(crate) struct WeightedBlock<'a> {
    pub(crate) name: &'a str,
    pub(crate) weight: i32,
    pub(crate) reverse: bool,
}

/// How [`resolve_weighted`] makes its result: an entry from (name, weight, reverse), the
/// (name, weight) of one, and where an instance keeps the list.
pub(crate) type WeightedInto<T> = (
    fn(String, i32, bool) -> T,
    fn(&T) -> (&str, i32),
    fn(&mut VrrpInstance, Vec<T>),
);

/// Resolves every instance's `NAME [weight N] [reverse|noreverse]` list (`list` picks it)
/// against `blocks` (the valid ones; `defined` names every block written) and stores the
/// (name, weight, reverse) of each entry, made into a `T` by `make`, with `store` (`weight`
/// reads a `T` back for the address owner's rule): the entry's weight (-254..=254;
/// `weight_zero` says what 0 does) and direction over the block's.
pub(crate) fn resolve_weighted<'d, T>(
    errors: &mut Vec<ConfigError>,
    kind: &TrackedKind,
    (drafts, instances): (&'d [InstanceDraft], &mut [Option<VrrpInstance>]),
    list: fn(&'d InstanceDraft) -> Option<&'d Located<Vec<TrackEntryDraft>>>,
    (defined, blocks): (&[&str], &[WeightedBlock]),
    (make, weight, store): WeightedInto<T>,
) {
    let hint = format!("must be -254..=254 (0: {})", kind.weight_zero);
    resolve_tracking(
        errors,
        kind,
        (drafts, instances),
        list,
        |errors, entry, seen| {
            let name = entry.name.as_ref()?;
            if !tracked_name(errors, kind, (&entry.loc, name), defined, seen) {
                return None;
            }
            let entry_weight = match &entry.weight {
                Some(w) => Some(in_range(errors, "weight", w, -254..=254, &hint)? as i32),
                None => None,
            };
            // The block itself is invalid (reported there) when it is not in `blocks`.
            let block = blocks.iter().find(|b| b.name == name.value)?;
            Some(make(
                name.value.clone(),
                entry_weight.unwrap_or(block.weight),
                entry.reverse.as_ref().map_or(block.reverse, |r| r.value),
            ))
        },
        weight,
        store,
    );
}

/// Resolves each instance's tracking list (`list` picks it from the draft) entry by entry
/// with `resolve`, reports a weight on the address owner ([`owner_weight`]), and stores
/// the result with `store`, or drops the instance when anything in the list was wrong
/// (`instances` is aligned with `drafts`).
pub(crate) fn resolve_tracking<'d, E, T>(
    errors: &mut Vec<ConfigError>,
    kind: &TrackedKind,
    (drafts, instances): (&'d [InstanceDraft], &mut [Option<VrrpInstance>]),
    list: fn(&'d InstanceDraft) -> Option<&'d Located<Vec<E>>>,
    mut resolve: impl FnMut(&mut Vec<ConfigError>, &'d E, &mut HashMap<&'d str, &'d Loc>) -> Option<T>,
    weight: fn(&T) -> (&str, i32),
    store: fn(&mut VrrpInstance, Vec<T>),
) {
    for (d, instance) in drafts.iter().zip(instances.iter_mut()) {
        let Some(list) = list(d) else {
            continue;
        };
        let errors_before = errors.len();
        let mut seen = HashMap::new();
        let mut tracked = Vec::with_capacity(list.value.len());
        for entry in &list.value {
            if let Some(t) = resolve(errors, entry, &mut seen) {
                tracked.push(t);
            }
        }
        let weighted = tracked.iter().map(weight).find(|(_, w)| *w != 0);
        owner_weight(errors, kind, &list.loc, d.priority.as_ref(), weighted);
        if errors.len() > errors_before {
            *instance = None;
        } else if let Some(instance) = instance {
            store(instance, tracked);
        }
    }
}

/// The address owner (priority 255) always runs at 255 (RFC 5798 §5.2.4), so a tracking
/// weight cannot move it: reported at `loc` for the first weighted entry (true then).
pub(crate) fn owner_weight(
    errors: &mut Vec<ConfigError>,
    kind: &TrackedKind,
    loc: &Loc,
    priority: Option<&Located<i64>>,
    weighted: Option<(&str, i32)>,
) -> bool {
    let Some(priority) = priority.filter(|p| p.value == 255) else {
        return false;
    };
    if let Some((name, weight)) = weighted {
        push(
            errors,
            loc,
            format!(
                "{} {name:?} has weight {weight}: the address owner (priority = 255 at {}) always runs at 255, so a weight cannot move it; use weight 0 ({}) or lower the priority",
                kind.keyword, priority.loc, kind.weight_zero
            ),
        );
        return true;
    }
    false
}

/// `version` / `vrrp_version`: 2 or 3.
fn version(errors: &mut Vec<ConfigError>, key: &str, value: &Located<i64>) -> Option<VrrpVersion> {
    match value.value {
        2 => Some(VrrpVersion::V2),
        3 => Some(VrrpVersion::V3),
        other => {
            push(
                errors,
                &value.loc,
                format!("{key} = {other}: must be 2 (RFC 3768) or 3 (RFC 5798)"),
            );
            None
        }
    }
}

/// `seconds` as a whole number of `1 / per_second` units, if it is one exactly
/// (to within float noise) and not negative.
pub(crate) fn whole_units(seconds: f64, per_second: f64) -> Option<u64> {
    let scaled = seconds * per_second;
    let rounded = scaled.round();
    let exact = (scaled - rounded).abs() < 1e-6;
    (exact && rounded >= 0.0 && rounded <= u64::MAX as f64).then_some(rounded as u64)
}

/// The advert interval in centiseconds for `version` (default: 1 second).
fn advert_int(
    errors: &mut Vec<ConfigError>,
    value: Option<&Located<f64>>,
    version: VrrpVersion,
) -> Option<u16> {
    let Some(value) = value else {
        return Some((DEFAULT_ADVERT_INT_SECS * 100.0) as u16);
    };
    let (centis, message) = match version {
        // RFC 3768 §5.3.7: an 8-bit field of whole seconds.
        VrrpVersion::V2 => (
            whole_units(value.value, 1.0)
                .filter(|s| (1..=255).contains(s))
                .map(|s| s * 100),
            "VRRP version 2 adverts carry whole seconds 1..=255 (RFC 3768 §5.3.7); use a whole number, or set version = 3 for sub-second intervals",
        ),
        // RFC 5798 §5.2.7: a 12-bit field of centiseconds.
        VrrpVersion::V3 => (
            whole_units(value.value, 100.0).filter(|c| (1..=4095).contains(c)),
            "VRRP version 3 adverts carry 0.01..=40.95 seconds in steps of 0.01 (RFC 5798 §5.2.7)",
        ),
    };
    if centis.is_none() {
        push(
            errors,
            &value.loc,
            format!("advert_int = {}: {message}", value.value),
        );
    }
    centis.map(|c| c as u16)
}

/// A duration that must be whole seconds in `min..=max`; `None` when absent or wrong.
pub(crate) fn whole_seconds(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&Located<f64>>,
    min: u64,
    max: u64,
) -> Option<u64> {
    let value = value?;
    let seconds = whole_units(value.value, 1.0).filter(|s| (min..=max).contains(s));
    if seconds.is_none() {
        let range = if max == u64::from(u32::MAX) {
            format!("{min} or more")
        } else {
            format!("{min}..={max}")
        };
        push(
            errors,
            &value.loc,
            format!("{key} = {}: must be whole seconds, {range}", value.value),
        );
    }
    seconds
}

/// `garp_interval` (seconds) in whole milliseconds.
fn garp_interval(errors: &mut Vec<ConfigError>, value: Option<&Located<f64>>) -> Option<u32> {
    let value = value?;
    let millis = whole_units(value.value, 1000.0).and_then(|ms| u32::try_from(ms).ok());
    if millis.is_none() {
        push(
            errors,
            &value.loc,
            format!(
                "garp_interval = {}: must be 0 or more seconds in steps of 0.001 (whole milliseconds)",
                value.value
            ),
        );
    }
    millis
}

/// Parses the virtual addresses; the family is the first address's.
fn virtual_addresses<'a>(
    errors: &mut Vec<ConfigError>,
    list: &'a Located<Vec<Located<String>>>,
    seen: &mut HashMap<IpAddr, &'a Loc>,
) -> (Option<AddressFamily>, Option<Vec<VirtualIp>>) {
    if list.value.is_empty() {
        push(
            errors,
            &list.loc,
            "virtual_ipaddress = []: list at least one address, e.g. [\"192.0.2.10/24\"]",
        );
        return (None, None);
    }
    let errors_before = errors.len();
    let mut first: Option<(AddressFamily, &Located<String>)> = None;
    let addresses = virtual_ip_entries(
        errors,
        "virtual_ipaddress",
        list,
        seen,
        |errors, entry, vip| {
            let family = AddressFamily::of(&vip.addr());
            match first {
            None => first = Some((family, entry)),
            Some((first_family, first_entry)) if first_family != family => push(
                errors,
                &entry.loc,
                format!(
                    "virtual_ipaddress entry {:?}: is {family} but {:?} at {} is {first_family}; one instance carries one address family, so put these in a separate vrrp_instance (or list them in virtual_ipaddress_excluded, which adverts do not carry)",
                    entry.value, first_entry.value, first_entry.loc
                ),
            ),
            Some(_) => {}
        }
        },
    );
    let family = first.map(|(family, _)| family);
    (family, addresses.filter(|_| errors.len() == errors_before))
}

/// keepalived's static addresses (each naming its `dev`: there is no
/// instance interface to default to), routes and rules.
fn statics(errors: &mut Vec<ConfigError>, draft: &Draft) -> Option<crate::model::Statics> {
    let mut seen = HashMap::new();
    let addresses = match &draft.static_ipaddress {
        Some(list) => virtual_ip_entries(
            errors,
            "static_ipaddress",
            list,
            &mut seen,
            |errors, entry, vip| {
                if vip.device.is_none() {
                    push(
                        errors,
                        &entry.loc,
                        format!(
                            "static_ipaddress entry {:?}: name its interface with `dev IF`",
                            entry.value
                        ),
                    );
                }
            },
        ),
        None => Some(Vec::new()),
    };
    let routes = parsed_entries(errors, "static_routes", &draft.static_routes);
    let rules = parsed_entries(errors, "static_rules", &draft.static_rules);
    Some(crate::model::Statics {
        addresses: addresses?,
        routes: routes?,
        rules: rules?,
    })
}

/// A number of gratuitous ARPs / NAs, at least 1; `default` when absent.
fn packet_count(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: Option<&Located<i64>>,
    default: u32,
    per: &str,
) -> Option<u32> {
    let Some(value) = value else {
        return Some(default);
    };
    let why = format!("must be at least 1 (the number of gratuitous ARPs / NAs per {per})");
    in_range(errors, key, value, 1..=u32::MAX.into(), &why).map(|n| n as u32)
}

/// `use_vmac [NAME] [MAC]` and `vmac_xmit_base` of instance `d`.
fn vmac(
    errors: &mut Vec<ConfigError>,
    d: &InstanceDraft,
    vrid: Option<u8>,
    family: Option<AddressFamily>,
) -> Option<Vmac> {
    let Some(args) = &d.use_vmac else {
        if let Some(xmit) = &d.vmac_xmit_base {
            push(
                errors,
                &xmit.loc,
                "vmac_xmit_base: needs use_vmac in the same instance",
            );
        }
        return None;
    };
    if family == Some(AddressFamily::Ipv6) {
        push(
            errors,
            &args.loc,
            "use_vmac: a virtual MAC for an IPv6 instance is not supported yet (its link-local address and neighbour discovery); use it on IPv4 instances",
        );
        return None;
    }
    let unicast = d.unicast_peer.as_ref().is_some_and(|p| !p.value.is_empty());
    if unicast && d.vmac_xmit_base.is_none() {
        // keepalived.conf(5), use_vmac: "If using use_vmac with unicast peers, vmac_xmit_base must be set."
        push(
            errors,
            &args.loc,
            "use_vmac with unicast_peer needs vmac_xmit_base (as keepalived requires): adverts to unicast peers leave through the instance's interface",
        );
        return None;
    }
    match Vmac::from_args(&args.value, vrid?) {
        Ok(vmac) => Some(vmac),
        Err(e) => {
            push(errors, &args.loc, e);
            None
        }
    }
}

/// Every entry of list `key` parsed (`virtual_routes`, `virtual_rules`); an
/// absent list is empty; `None` when any entry is wrong, each named.
fn parsed_entries<T: std::str::FromStr<Err = String>>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    list: &Option<Located<Vec<Located<String>>>>,
) -> Option<Vec<T>> {
    let Some(list) = list else {
        return Some(Vec::new());
    };
    let errors_before = errors.len();
    let entries: Vec<T> = list
        .value
        .iter()
        .filter_map(|entry| match entry.value.parse() {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                push(
                    errors,
                    &entry.loc,
                    format!("{key} entry {:?}: {e}", entry.value),
                );
                None
            }
        })
        .collect();
    (errors.len() == errors_before).then_some(entries)
}

/// The entries of `virtual_ipaddress` or `virtual_ipaddress_excluded`
/// (`key`), each parsed, checked by `check`, and listed once in both lists
/// (`seen` spans them); `None` when any is wrong.
fn virtual_ip_entries<'a>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    list: &'a Located<Vec<Located<String>>>,
    seen: &mut HashMap<IpAddr, &'a Loc>,
    mut check: impl FnMut(&mut Vec<ConfigError>, &'a Located<String>, &VirtualIp),
) -> Option<Vec<VirtualIp>> {
    let errors_before = errors.len();
    let mut addresses = Vec::with_capacity(list.value.len());
    for entry in &list.value {
        let vip: VirtualIp = match entry.value.parse() {
            Ok(vip) => vip,
            Err(e) => {
                push(
                    errors,
                    &entry.loc,
                    format!("{key} entry {:?}: {e}", entry.value),
                );
                continue;
            }
        };
        check(errors, entry, &vip);
        if let Some(earlier) = seen.insert(vip.addr(), &entry.loc) {
            push(
                errors,
                &entry.loc,
                format!(
                    "{key} entry {:?}: {} is already listed at {earlier}; list each address once",
                    entry.value,
                    vip.addr()
                ),
            );
        }
        addresses.push(vip);
    }
    (errors.len() == errors_before).then_some(addresses)
}

/// An IP address that must be of the instance's `family` (when known).
/// The outer `Option` of the callers distinguishes "absent" from this `None` ("wrong").
fn ip_address(
    errors: &mut Vec<ConfigError>,
    what: &str,
    text: &Located<String>,
    family: Option<AddressFamily>,
) -> Option<IpAddr> {
    let Ok(addr) = text.value.parse::<IpAddr>() else {
        push(
            errors,
            &text.loc,
            format!(
                "{what} {:?}: not an IP address (write it without a prefix length)",
                text.value
            ),
        );
        return None;
    };
    match family {
        Some(family) if family != AddressFamily::of(&addr) => {
            push(
                errors,
                &text.loc,
                format!(
                    "{what} {:?}: is {} but the virtual addresses are {family}; use an {family} address",
                    text.value,
                    AddressFamily::of(&addr)
                ),
            );
            None
        }
        _ => Some(addr),
    }
}

fn unicast_peers(
    errors: &mut Vec<ConfigError>,
    peers: &Located<Vec<Located<String>>>,
    family: Option<AddressFamily>,
) -> Option<Vec<IpAddr>> {
    let errors_before = errors.len();
    let mut seen: HashMap<IpAddr, &Loc> = HashMap::new();
    let mut addresses = Vec::with_capacity(peers.value.len());
    for peer in &peers.value {
        let Some(addr) = ip_address(errors, "unicast_peer entry", peer, family) else {
            continue;
        };
        if let Some(earlier) = seen.insert(addr, &peer.loc) {
            push(
                errors,
                &peer.loc,
                format!(
                    "unicast_peer entry {:?}: already listed at {earlier}; list each peer once",
                    peer.value
                ),
            );
        }
        addresses.push(addr);
    }
    (errors.len() == errors_before).then_some(addresses)
}

fn authentication(
    errors: &mut Vec<ConfigError>,
    auth: &Located<AuthDraft>,
    version: Option<VrrpVersion>,
) -> Option<Authentication> {
    let errors_before = errors.len();
    if version == Some(VrrpVersion::V3) {
        // RFC 5798 §9: VRRPv3 removed authentication.
        push(
            errors,
            &auth.loc,
            "authentication: VRRP version 3 has no authentication (RFC 5798 §9 removed it); remove it or set version = 2",
        );
    }
    for (key, example) in [
        ("auth_type", "auth_type = \"PASS\""),
        ("auth_pass", "auth_pass = \"secret\""),
    ] {
        if !auth.value.present.contains(&key) {
            push(
                errors,
                &auth.loc,
                format!("authentication is missing `{key}`; add e.g. `{example}`"),
            );
        }
    }
    if let Some(auth_type) = &auth.value.auth_type {
        let hint = match auth_type.value.as_str() {
            "PASS" => None,
            "AH" => Some("IPsec AH authentication is not supported (RFC 3768 removed it); use \"PASS\" or remove authentication"),
            _ => Some("must be \"PASS\" (simple password), the only type haldir supports"),
        };
        if let Some(hint) = hint {
            push(
                errors,
                &auth_type.loc,
                format!("auth_type = {:?}: {hint}", auth_type.value),
            );
        }
    }
    if let Some(pass) = &auth.value.auth_pass {
        // The password itself is never echoed into messages.
        let len = pass.value.len();
        if !(1..=MAX_AUTH_PASS_BYTES).contains(&len) {
            push(
                errors,
                &pass.loc,
                format!(
                    "auth_pass: is {len} bytes; must be 1..={MAX_AUTH_PASS_BYTES} bytes (the VRRPv2 field holds 8; keepalived would silently truncate a longer one)"
                ),
            );
        }
    }
    if errors.len() > errors_before {
        return None;
    }
    Some(Authentication::Pass(
        auth.value.auth_pass.as_ref()?.value.clone(),
    ))
}

/// Longest `notify_timeout`, in seconds.
const MAX_NOTIFY_TIMEOUT_SECS: f64 = 3600.0;

/// `global_defs` `script_user` ("USER" or "USER GROUP") and `notify_timeout`.
fn script_settings(errors: &mut Vec<ConfigError>, d: &ScriptsDraft) -> ScriptSettings {
    let mut settings = ScriptSettings {
        security: d.enable_script_security.as_ref().is_some_and(|f| f.value),
        ..ScriptSettings::default()
    };
    if let Some(user) = &d.script_user {
        let words: Vec<&str> = user.value.split_whitespace().collect();
        match words.as_slice() {
            [user] => settings.user = Some((*user).to_owned()),
            [user, group] => {
                settings.user = Some((*user).to_owned());
                settings.group = Some((*group).to_owned());
            }
            _ => push(
                errors,
                &user.loc,
                format!(
                    "script_user = {:?}: give a user name, optionally followed by a group, e.g. \"keepalived_script\" or \"nobody nogroup\"",
                    user.value
                ),
            ),
        }
    }
    if let Some(timeout) = &d.notify_timeout {
        if timeout.value.is_finite()
            && timeout.value > 0.0
            && timeout.value <= MAX_NOTIFY_TIMEOUT_SECS
        {
            settings.notify_timeout = std::time::Duration::from_secs_f64(timeout.value);
        } else {
            push(
                errors,
                &timeout.loc,
                format!(
                    "notify_timeout = {}: must be more than 0 and at most {MAX_NOTIFY_TIMEOUT_SECS} seconds",
                    timeout.value
                ),
            );
        }
    }
    settings
}

/// Every notify script of the instances and sync groups can run: its command line
/// splits, and as `script_user` the program exists and is executable (and, with
/// `enable_script_security`, only root can change it). Errors at the script's key; an
/// unknown script user at `script_user`, once.
fn notify_scripts_run(errors: &mut Vec<ConfigError>, draft: &Draft, settings: &ScriptSettings) {
    let user_loc = draft.scripts.script_user.as_ref().map(|u| u.loc);
    let notifies = draft
        .instances
        .iter()
        .map(|i| &i.notify)
        .chain(draft.sync_groups.iter().map(|g| &g.notify));
    let mut user_errors = Vec::new();
    for notify in notifies {
        for (key, script) in [
            ("notify_master", &notify.master),
            ("notify_backup", &notify.backup),
            ("notify_fault", &notify.fault),
            ("notify_stop", &notify.stop),
            ("notify", &notify.notify),
        ] {
            // An empty or malformed line is reported by notify_scripts().
            let Some(script) = script
                .as_ref()
                .filter(|s| !s.value.trim().is_empty() && !s.value.contains(char::is_control))
            else {
                continue;
            };
            let at = user_loc.unwrap_or(script.loc);
            let mut found = Vec::new();
            crate::validate_health::script_runs(
                &mut found,
                key,
                script,
                (settings.user.as_deref(), settings.group.as_deref()),
                &at,
                settings.security,
            );
            for error in found {
                if user_loc
                    .as_ref()
                    .is_some_and(|u| error.loc.as_ref() == Some(u))
                {
                    if !user_errors.contains(&error) {
                        user_errors.push(error);
                    }
                } else {
                    errors.push(error);
                }
            }
        }
    }
    errors.extend(user_errors);
}

/// An instance's notify scripts: each a non-empty command line (whether it can run is
/// [`notify_scripts_run`]'s).
fn notify_scripts(errors: &mut Vec<ConfigError>, d: &NotifyDraft) -> NotifyScripts {
    let mut one = |key: &str, script: &Option<Located<String>>| {
        let script = script.as_ref()?;
        if script.value.trim().is_empty() || script.value.contains(char::is_control) {
            push(
                errors,
                &script.loc,
                format!(
                    "{key} = {:?}: give the script to run, e.g. \"/etc/haldir/{key}.sh\"",
                    script.value
                ),
            );
            return None;
        }
        Some(script.value.clone())
    };
    NotifyScripts {
        master: one("notify_master", &d.master),
        backup: one("notify_backup", &d.backup),
        fault: one("notify_fault", &d.fault),
        stop: one("notify_stop", &d.stop),
        notify: one("notify", &d.notify),
    }
}
