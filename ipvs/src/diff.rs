//! The pure reconciler step: from the desired table and the table the kernel
//! has, the ordered list of operations that makes the kernel match, touching
//! nothing haldir does not own.
//!
//! Ordering rules (each op is one netlink request):
//! 1. removals first: destinations that are no longer wanted, then whole
//!    services, each service's destinations before the service itself;
//! 2. then changes in place: `SetService` / `SetDest`;
//! 3. then additions: each new service right before its destinations, then
//!    new destinations of existing services.
//!
//! Everything about a service except its key can be changed in place:
//! `ip_vs_edit_service` rebinds the scheduler and persistence engine and sets
//! flags, timeout and netmask; `__ip_vs_update_dest` (reached through
//! `ip_vs_edit_dest`) sets the forwarding method, weight, thresholds and
//! tunnel settings. The key holds the address family, so a change of family,
//! protocol, address, port or mark is a delete plus an add.

use std::cmp::Ordering;
use std::fmt;

use crate::model::{DestKey, Destination, Dests, Service, ServiceKey, Table};

/// One change to the kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `IPVS_CMD_NEW_SERVICE`.
    AddService {
        /// The service.
        key: ServiceKey,
        /// Its settings.
        service: Service,
    },
    /// `IPVS_CMD_SET_SERVICE`.
    SetService {
        /// The service.
        key: ServiceKey,
        /// Its new settings.
        service: Service,
    },
    /// `IPVS_CMD_DEL_SERVICE`.
    DelService {
        /// The service.
        key: ServiceKey,
    },
    /// `IPVS_CMD_NEW_DEST`.
    AddDest {
        /// The service the destination belongs to.
        service: ServiceKey,
        /// The destination.
        key: DestKey,
        /// Its settings.
        dest: Destination,
    },
    /// `IPVS_CMD_SET_DEST`.
    SetDest {
        /// The service the destination belongs to.
        service: ServiceKey,
        /// The destination.
        key: DestKey,
        /// Its new settings.
        dest: Destination,
    },
    /// `IPVS_CMD_DEL_DEST`.
    DelDest {
        /// The service the destination belongs to.
        service: ServiceKey,
        /// The destination.
        key: DestKey,
    },
}

impl Op {
    /// The service the operation is about (or whose destination it is about).
    pub fn service_key(&self) -> &ServiceKey {
        match self {
            Op::AddService { key, .. } | Op::SetService { key, .. } | Op::DelService { key } => key,
            Op::AddDest { service, .. }
            | Op::SetDest { service, .. }
            | Op::DelDest { service, .. } => service,
        }
    }

    /// The destination the operation is about, if it is about one.
    pub fn dest_key(&self) -> Option<&DestKey> {
        match self {
            Op::AddDest { key, .. } | Op::SetDest { key, .. } | Op::DelDest { key, .. } => {
                Some(key)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    /// `add service TCP 192.0.2.10:80`, `set destination 10.0.0.1:80 of service ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            Op::AddService { .. } | Op::AddDest { .. } => "add",
            Op::SetService { .. } | Op::SetDest { .. } => "set",
            Op::DelService { .. } | Op::DelDest { .. } => "delete",
        };
        match self.dest_key() {
            Some(dest) => write!(
                f,
                "{verb} destination {dest} of service {}",
                self.service_key()
            ),
            None => write!(f, "{verb} service {}", self.service_key()),
        }
    }
}

/// The operations that turn `actual` into `desired` on the services haldir
/// owns, in the order described in the module documentation.
///
/// A service is owned if it is in `desired` or `owned(key)` says so (haldir
/// created or adopted it earlier and the configuration has since dropped it).
/// Services in `actual` that are neither are never touched, nor are their
/// destinations. An owned service is owned whole: destinations someone added
/// to it by hand are removed.
pub fn diff(desired: &Table, actual: &Table, owned: &dyn Fn(&ServiceKey) -> bool) -> Vec<Op> {
    diff_counting_others(desired, actual, owned).0
}

/// [`diff`], and how many services of `actual` it left alone as someone else's. When that
/// is none and every operation is accepted, the kernel holds exactly `desired`.
///
/// Both tables are sorted by key, so one walk over the two side by side pairs them: no
/// lookup per service (at 10,000 services a reload's diff was 20,000 searches of a
/// B-tree).
pub(crate) fn diff_counting_others(
    desired: &Table,
    actual: &Table,
    owned: &dyn Fn(&ServiceKey) -> bool,
) -> (Vec<Op>, usize) {
    let mut removals = Vec::new();
    let mut changes = Vec::new();
    let mut additions = Vec::new();
    if actual.services.is_empty() {
        // A start: every service and destination is added, in one allocation.
        additions.reserve_exact(desired.service_count() + desired.dest_count());
    }
    let mut new_dests_of_existing = Vec::new();
    let mut others = 0;

    let mut wanted = desired.services.iter().peekable();
    let mut present = actual.services.iter().peekable();
    loop {
        let order = match (wanted.peek(), present.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((wanted_key, _)), Some((present_key, _))) => wanted_key.cmp(present_key),
        };
        match order {
            // Only desired: added, right before its destinations.
            Ordering::Less => {
                let Some((key, (service, desired_dests))) = wanted.next() else {
                    break;
                };
                additions.push(Op::AddService {
                    key: *key,
                    service: service.clone(),
                });
                additions.extend(desired_dests.iter().map(|(dest_key, dest)| Op::AddDest {
                    service: *key,
                    key: *dest_key,
                    dest: *dest,
                }));
            }
            // Only in the kernel: removed if owned, else someone else's.
            Ordering::Greater => {
                let Some((key, (_, actual_dests))) = present.next() else {
                    break;
                };
                if !owned(key) {
                    others += 1;
                    continue;
                }
                removals.extend(actual_dests.keys().map(|dest| Op::DelDest {
                    service: *key,
                    key: *dest,
                }));
                removals.push(Op::DelService { key: *key });
            }
            Ordering::Equal => {
                let (
                    Some((key, (service, desired_dests))),
                    Some((_, (actual_service, actual_dests))),
                ) = (wanted.next(), present.next())
                else {
                    break;
                };
                if actual_service != service {
                    changes.push(Op::SetService {
                        key: *key,
                        service: service.clone(),
                    });
                }
                diff_dests(
                    key,
                    desired_dests,
                    actual_dests,
                    &mut removals,
                    &mut changes,
                    &mut new_dests_of_existing,
                );
            }
        }
    }

    // In that order; where one list holds every operation (a start: only additions), it
    // is the answer as it is, not copied (at 10,000 services: 4 MB).
    let mut parts = [removals, changes, additions, new_dests_of_existing];
    let total: usize = parts.iter().map(Vec::len).sum();
    if let Some(whole) = parts.iter_mut().find(|part| part.len() == total) {
        return (std::mem::take(whole), others);
    }
    let mut ops = Vec::with_capacity(total);
    for part in parts {
        ops.extend(part);
    }
    (ops, others)
}

/// The destination operations within one service present on both sides.
fn diff_dests(
    service: &ServiceKey,
    desired: &Dests,
    actual: &Dests,
    removals: &mut Vec<Op>,
    changes: &mut Vec<Op>,
    additions: &mut Vec<Op>,
) {
    for key in actual.keys().filter(|key| !desired.contains_key(key)) {
        removals.push(Op::DelDest {
            service: *service,
            key: *key,
        });
    }
    for (key, dest) in desired {
        match actual.get(key) {
            None => additions.push(Op::AddDest {
                service: *service,
                key: *key,
                dest: *dest,
            }),
            Some(actual_dest) if actual_dest != dest => changes.push(Op::SetDest {
                service: *service,
                key: *key,
                dest: *dest,
            }),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::apply::apply_in_memory;
    use crate::model::{
        AddressFamily, Forwarding, Persistence, Protocol, ServiceFlags, Tunnel, TunnelEncapsulation,
    };

    fn tcp(last: u8, port: u16) -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            port,
        }
    }

    fn rs(last: u8) -> DestKey {
        DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 80)
    }

    fn dr(weight: u32) -> Destination {
        Destination::new(Forwarding::DirectRoute, weight)
    }

    /// A service key, its scheduler and its destinations.
    type Entry<'a> = (ServiceKey, &'a str, &'a [(DestKey, Destination)]);

    fn table(entries: &[Entry<'_>]) -> Table {
        let mut table = Table::new();
        for (key, scheduler, dests) in entries {
            table.insert_service(*key, Service::new(*scheduler));
            for (dest_key, dest) in *dests {
                table.insert_dest(key, *dest_key, *dest);
            }
        }
        table
    }

    fn nothing_owned(_: &ServiceKey) -> bool {
        false
    }

    fn everything_owned(_: &ServiceKey) -> bool {
        true
    }

    #[test]
    fn equal_tables_need_no_ops() {
        let t = table(&[(tcp(10, 80), "wrr", &[(rs(1), dr(1)), (rs(2), dr(2))])]);
        assert!(diff(&t, &t, &everything_owned).is_empty());
    }

    #[test]
    fn one_weight_change_is_exactly_one_set_dest() {
        let actual = table(&[(tcp(10, 80), "wrr", &[(rs(1), dr(1)), (rs(2), dr(2))])]);
        let desired = table(&[(tcp(10, 80), "wrr", &[(rs(1), dr(1)), (rs(2), dr(5))])]);
        assert_eq!(
            diff(&desired, &actual, &nothing_owned),
            vec![Op::SetDest {
                service: tcp(10, 80),
                key: rs(2),
                dest: dr(5)
            }]
        );
    }

    #[test]
    fn new_service_comes_before_its_destinations() {
        let desired = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1)), (rs(2), dr(1))])]);
        let ops = diff(&desired, &Table::new(), &nothing_owned);
        assert_eq!(ops.len(), 3);
        assert!(matches!(ops[0], Op::AddService { key, .. } if key == tcp(10, 80)));
        assert!(ops[1..].iter().all(|op| matches!(op, Op::AddDest { .. })));
    }

    #[test]
    fn removed_service_loses_its_destinations_first() {
        let actual = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1)), (rs(2), dr(1))])]);
        let ops = diff(&Table::new(), &actual, &everything_owned);
        assert_eq!(
            ops,
            vec![
                Op::DelDest {
                    service: tcp(10, 80),
                    key: rs(1)
                },
                Op::DelDest {
                    service: tcp(10, 80),
                    key: rs(2)
                },
                Op::DelService { key: tcp(10, 80) },
            ]
        );
    }

    #[test]
    fn services_not_owned_are_never_touched() {
        let foreign = (tcp(99, 443), "lc", &[(rs(9), dr(3))][..]);
        let actual = table(&[foreign]);
        assert!(diff(&Table::new(), &actual, &nothing_owned).is_empty());
        // Even when haldir changes its own services next to it.
        let actual = table(&[foreign, (tcp(10, 80), "rr", &[(rs(1), dr(1))])]);
        let desired = table(&[(tcp(10, 80), "wrr", &[(rs(2), dr(1))])]);
        let ops = diff(&desired, &actual, &|key| *key == tcp(10, 80));
        assert!(
            ops.iter().all(|op| *op.service_key() != tcp(99, 443)),
            "{ops:?}"
        );
    }

    #[test]
    fn scheduler_flags_and_persistence_changes_are_set_service() {
        let actual = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1))])]);
        let mut desired = actual.clone();
        let (service, _) = desired.services.get_mut(&tcp(10, 80)).unwrap();
        service.scheduler = "wlc".into();
        service.flags = ServiceFlags::ONE_PACKET;
        service.persistence = Some(Persistence {
            timeout_secs: 300,
            netmask_prefix_len: 24,
        });
        let ops = diff(&desired, &actual, &nothing_owned);
        assert_eq!(ops.len(), 1);
        assert!(matches!(&ops[0], Op::SetService { service, .. } if service.scheduler == "wlc"));
    }

    #[test]
    fn forwarding_method_and_threshold_changes_are_set_dest() {
        // __ip_vs_update_dest sets conn_flags (the forwarding method) on edit.
        let actual = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1))])]);
        let tunnelled = Destination {
            forwarding: Forwarding::Tunnel(Tunnel {
                encapsulation: TunnelEncapsulation::Gue,
                port: 6080,
                flags: Default::default(),
            }),
            weight: 1,
            upper_threshold: 100,
            lower_threshold: 10,
        };
        let desired = table(&[(tcp(10, 80), "rr", &[(rs(1), tunnelled)])]);
        assert_eq!(
            diff(&desired, &actual, &nothing_owned),
            vec![Op::SetDest {
                service: tcp(10, 80),
                key: rs(1),
                dest: tunnelled
            }]
        );
    }

    #[test]
    fn a_changed_key_is_delete_then_add() {
        // Same address and port, other family: a different key.
        let v6 = ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)),
            port: 80,
        };
        let actual = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1))])]);
        let desired = table(&[(v6, "rr", &[])]);
        let ops = diff(&desired, &actual, &|key| *key == tcp(10, 80));
        assert_eq!(
            ops,
            vec![
                Op::DelDest {
                    service: tcp(10, 80),
                    key: rs(1)
                },
                Op::DelService { key: tcp(10, 80) },
                Op::AddService {
                    key: v6,
                    service: Service::new("rr")
                },
            ]
        );
    }

    #[test]
    fn hand_added_destination_in_an_owned_service_is_removed_first() {
        let actual = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(1)), (rs(7), dr(1))])]);
        let desired = table(&[(tcp(10, 80), "rr", &[(rs(1), dr(2)), (rs(3), dr(1))])]);
        let ops = diff(&desired, &actual, &nothing_owned);
        assert_eq!(
            ops,
            vec![
                Op::DelDest {
                    service: tcp(10, 80),
                    key: rs(7)
                },
                Op::SetDest {
                    service: tcp(10, 80),
                    key: rs(1),
                    dest: dr(2)
                },
                Op::AddDest {
                    service: tcp(10, 80),
                    key: rs(3),
                    dest: dr(1)
                },
            ]
        );
    }

    #[test]
    fn ops_describe_themselves_for_error_messages() {
        let op = Op::DelDest {
            service: tcp(10, 80),
            key: rs(1),
        };
        assert_eq!(
            op.to_string(),
            "delete destination 10.0.0.1:80 of service TCP 192.0.2.10:80"
        );
        assert_eq!(
            Op::AddService {
                key: tcp(10, 80),
                service: Service::new("rr")
            }
            .to_string(),
            "add service TCP 192.0.2.10:80"
        );
    }

    /// A small deterministic generator (xorshift), so the property tests need
    /// no extra crate and every failure is reproducible from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random table over a small key space, so that two tables overlap.
    fn random_table(rng: &mut Rng) -> Table {
        let schedulers = ["rr", "wrr", "lc", "sh"];
        let mut table = Table::new();
        for _ in 0..rng.below(8) {
            let key = match rng.below(4) {
                0 => ServiceKey::Fwmark {
                    family: AddressFamily::Ipv4,
                    mark: 1 + rng.below(3) as u32,
                },
                1 => ServiceKey::Address {
                    protocol: Protocol::Udp,
                    addr: IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0,
                        0,
                        0,
                        0,
                        0,
                        rng.below(3) as u16,
                    )),
                    port: 53,
                },
                _ => tcp(rng.below(4) as u8, 80 + rng.below(2) as u16),
            };
            let mut service = Service::new(schedulers[rng.below(4) as usize]);
            if rng.below(3) == 0 {
                service.persistence = Some(Persistence {
                    timeout_secs: 60 * (1 + rng.below(3) as u32),
                    netmask_prefix_len: 24,
                });
            }
            table.insert_service(key, service);
            for _ in 0..rng.below(5) {
                let forwarding = match rng.below(3) {
                    0 => Forwarding::Masquerade,
                    1 => Forwarding::Tunnel(Tunnel::default()),
                    _ => Forwarding::DirectRoute,
                };
                let dest = Destination {
                    forwarding,
                    weight: rng.below(4) as u32,
                    upper_threshold: 0,
                    lower_threshold: 0,
                };
                table.insert_dest(&key, rs(rng.below(6) as u8), dest);
            }
        }
        table
    }

    /// apply(diff(desired, actual)) gives desired on owned keys and leaves the
    /// rest alone; the order never touches a missing service or destination.
    #[test]
    fn applying_the_diff_reaches_the_desired_table_on_owned_keys_only() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..2000 {
            let desired = random_table(&mut rng);
            let actual = random_table(&mut rng);
            let owned: BTreeSet<ServiceKey> = actual
                .services
                .keys()
                .filter(|_| rng.below(2) == 0)
                .copied()
                .collect();
            let ops = diff(&desired, &actual, &|key| owned.contains(key));

            let mut result = actual.clone();
            for op in &ops {
                // Each op must be valid in order: kernel semantics (EEXIST,
                // ESRCH, ENOENT) are enforced by the in-memory applier.
                apply_in_memory(&mut result, op)
                    .unwrap_or_else(|e| panic!("case {case}: {op} failed: {e}\nops: {ops:#?}"));
            }
            for (key, entry) in &desired.services {
                assert_eq!(result.services.get(key), Some(entry), "case {case}: {key}");
            }
            for (key, entry) in &actual.services {
                if desired.services.contains_key(key) {
                    continue;
                }
                if owned.contains(key) {
                    assert!(
                        !result.services.contains_key(key),
                        "case {case}: {key} kept"
                    );
                } else {
                    assert_eq!(
                        result.services.get(key),
                        Some(entry),
                        "case {case}: {key} touched"
                    );
                    assert!(ops.iter().all(|op| op.service_key() != key));
                }
            }
            assert_eq!(
                diff(&desired, &result, &|key| owned.contains(key)),
                vec![],
                "case {case}: a second diff must be empty"
            );
            check_ordering(&ops);
        }
    }

    /// Removals, then changes, then additions; a service's add before its
    /// destinations' adds; a service's destination deletes before its delete.
    fn check_ordering(ops: &[Op]) {
        let phase = |op: &Op| match op {
            Op::DelDest { .. } | Op::DelService { .. } => 0,
            Op::SetService { .. } | Op::SetDest { .. } => 1,
            Op::AddService { .. } | Op::AddDest { .. } => 2,
        };
        assert!(
            ops.windows(2).all(|w| phase(&w[0]) <= phase(&w[1])),
            "{ops:#?}"
        );
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::AddDest { service, .. } => {
                    if let Some(j) = ops
                        .iter()
                        .position(|o| matches!(o, Op::AddService { key, .. } if key == service))
                    {
                        assert!(j < i, "dest added before its service: {ops:#?}");
                    }
                }
                Op::DelDest { service, .. } => {
                    if let Some(j) = ops
                        .iter()
                        .position(|o| matches!(o, Op::DelService { key } if key == service))
                    {
                        assert!(i < j, "dest deleted after its service: {ops:#?}");
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn one_random_weight_change_is_always_one_op() {
        let mut rng = Rng(42);
        for _ in 0..500 {
            let actual = random_table(&mut rng);
            let mut desired = actual.clone();
            let Some((key, (_, dests))) = desired
                .services
                .iter_mut()
                .find(|(_, (_, dests))| !dests.is_empty())
            else {
                continue;
            };
            let key = *key;
            let (dest_key, dest) = dests.iter_mut().next().unwrap();
            dest.weight += 1;
            let expected = Op::SetDest {
                service: key,
                key: *dest_key,
                dest: *dest,
            };
            assert_eq!(diff(&desired, &actual, &everything_owned), vec![expected]);
        }
    }

    #[test]
    fn interleaved_tables_pair_by_key_and_others_services_are_counted() {
        // Keys alternate between the two sides, so the walk advances each in turn.
        let desired = table(&[
            (tcp(1, 80), "rr", &[(rs(1), dr(1))]),
            (tcp(3, 80), "rr", &[(rs(1), dr(2))]),
            (tcp(5, 80), "rr", &[]),
        ]);
        let actual = table(&[
            (tcp(2, 80), "rr", &[(rs(1), dr(1))]),
            (tcp(3, 80), "rr", &[(rs(1), dr(1)), (rs(2), dr(1))]),
            (tcp(4, 80), "rr", &[(rs(1), dr(1))]),
            (tcp(6, 80), "wlc", &[]),
        ]);
        // 2 and 6 were ours; 4 is someone else's.
        let ours = |key: &ServiceKey| *key == tcp(2, 80) || *key == tcp(6, 80);
        let (ops, others) = diff_counting_others(&desired, &actual, &ours);
        assert_eq!(others, 1);
        assert_eq!(
            ops,
            vec![
                Op::DelDest {
                    service: tcp(2, 80),
                    key: rs(1)
                },
                Op::DelService { key: tcp(2, 80) },
                Op::DelDest {
                    service: tcp(3, 80),
                    key: rs(2)
                },
                Op::DelService { key: tcp(6, 80) },
                Op::SetDest {
                    service: tcp(3, 80),
                    key: rs(1),
                    dest: dr(2)
                },
                Op::AddService {
                    key: tcp(1, 80),
                    service: Service::new("rr")
                },
                Op::AddDest {
                    service: tcp(1, 80),
                    key: rs(1),
                    dest: dr(1)
                },
                Op::AddService {
                    key: tcp(5, 80),
                    service: Service::new("rr")
                },
            ]
        );
        // Replayed on the kernel's table, they give the desired one plus the other's service.
        let mut after = actual.clone();
        for op in &ops {
            apply_in_memory(&mut after, op).unwrap();
        }
        let mut expected = desired.clone();
        expected.insert_service(tcp(4, 80), Service::new("rr"));
        expected.insert_dest(&tcp(4, 80), rs(1), dr(1));
        assert_eq!(after, expected);
    }
}
