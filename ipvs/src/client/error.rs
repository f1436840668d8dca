//! The client's errors, phrased for the operator: what failed, on which
//! service or destination, and what to do about it.

use std::io;

use crate::diff::Op;
use crate::model::{DestKey, ServiceKey};

/// An IPVS operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpvsError {
    /// The "IPVS" generic-netlink family is not registered.
    #[error("this kernel has no IPVS; load the ip_vs module (modprobe ip_vs)")]
    NoIpvs,
    /// EPERM: every IPVS command is `GENL_ADMIN_PERM`.
    #[error("{operation}: permission denied; IPVS needs CAP_NET_ADMIN (run haldir as root or grant it the capability)")]
    PermissionDenied {
        /// What was attempted.
        operation: String,
    },
    /// EEXIST on add service.
    #[error("cannot add service {service}: it already exists")]
    ServiceExists {
        /// The service.
        service: ServiceKey,
    },
    /// ESRCH: the service an operation names does not exist.
    #[error("{operation}: service {service} does not exist")]
    NoSuchService {
        /// What was attempted.
        operation: String,
        /// The service.
        service: ServiceKey,
    },
    /// EEXIST on add destination.
    #[error("cannot add destination {dest} to service {service}: it already exists")]
    DestExists {
        /// The service.
        service: ServiceKey,
        /// The destination.
        dest: DestKey,
    },
    /// ENOENT on set / delete destination.
    #[error("{operation}: destination {dest} of service {service} does not exist")]
    NoSuchDest {
        /// What was attempted.
        operation: String,
        /// The service.
        service: ServiceKey,
        /// The destination.
        dest: DestKey,
    },
    /// ENOENT on add / set service: `ip_vs_scheduler_get` or
    /// `ip_vs_pe_getbyname` found no module.
    #[error("{operation}: the kernel has no scheduler {scheduler:?} (or no such persistence engine); check the name or load its module (modprobe ip_vs_{scheduler})")]
    UnknownScheduler {
        /// What was attempted.
        operation: String,
        /// The scheduler asked for.
        scheduler: String,
    },
    /// Any other error the kernel returned.
    #[error("{operation}: {source}")]
    Kernel {
        /// What was attempted.
        operation: String,
        /// The errno.
        source: io::Error,
    },
    /// The netlink socket itself failed.
    #[error("IPVS netlink socket: {0}")]
    Transport(String),
    /// The kernel's reply could not be understood.
    #[error("cannot decode the kernel's IPVS reply: {0}")]
    Decode(String),
}

impl IpvsError {
    /// The error the kernel's `errno` means for `op`.
    pub fn for_op(op: &Op, errno: i32) -> IpvsError {
        let operation = op.to_string();
        match (errno, op) {
            (libc::EPERM, _) => IpvsError::PermissionDenied { operation },
            (libc::EEXIST, Op::AddService { key, .. }) => {
                IpvsError::ServiceExists { service: *key }
            }
            (libc::EEXIST, Op::AddDest { service, key, .. }) => IpvsError::DestExists {
                service: *service,
                dest: *key,
            },
            (libc::ESRCH, _) => IpvsError::NoSuchService {
                operation,
                service: *op.service_key(),
            },
            (libc::ENOENT, Op::AddService { service, .. } | Op::SetService { service, .. }) => {
                IpvsError::UnknownScheduler {
                    operation,
                    scheduler: service.scheduler.clone(),
                }
            }
            (libc::ENOENT, Op::SetDest { service, key, .. } | Op::DelDest { service, key }) => {
                IpvsError::NoSuchDest {
                    operation,
                    service: *service,
                    dest: *key,
                }
            }
            _ => IpvsError::Kernel {
                operation,
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }

    /// The error the kernel's `errno` means for a request described as `operation`.
    pub fn for_request(operation: &str, errno: i32) -> IpvsError {
        match errno {
            libc::EPERM => IpvsError::PermissionDenied {
                operation: operation.to_owned(),
            },
            _ => IpvsError::Kernel {
                operation: operation.to_owned(),
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::model::{Destination, Forwarding, Protocol, Service};

    fn service() -> ServiceKey {
        ServiceKey::Address {
            protocol: Protocol::Tcp,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            port: 80,
        }
    }

    fn dest() -> DestKey {
        DestKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80)
    }

    #[test]
    fn errnos_name_the_service_or_destination() {
        let add = Op::AddService {
            key: service(),
            service: Service::new("wrr"),
        };
        assert_eq!(
            IpvsError::for_op(&add, libc::EEXIST).to_string(),
            "cannot add service TCP 192.0.2.10:80: it already exists"
        );
        assert!(IpvsError::for_op(&add, libc::EPERM)
            .to_string()
            .contains("CAP_NET_ADMIN"));
        assert!(IpvsError::for_op(&add, libc::ENOENT)
            .to_string()
            .contains("modprobe ip_vs_wrr"));
        let add_dest = Op::AddDest {
            service: service(),
            key: dest(),
            dest: Destination::new(Forwarding::DirectRoute, 1),
        };
        assert_eq!(
            IpvsError::for_op(&add_dest, libc::ESRCH).to_string(),
            "add destination 10.0.0.1:80 of service TCP 192.0.2.10:80: service TCP 192.0.2.10:80 does not exist"
        );
        assert_eq!(
            IpvsError::for_op(&add_dest, libc::EEXIST).to_string(),
            "cannot add destination 10.0.0.1:80 to service TCP 192.0.2.10:80: it already exists"
        );
        let del_dest = Op::DelDest {
            service: service(),
            key: dest(),
        };
        assert!(matches!(
            IpvsError::for_op(&del_dest, libc::ENOENT),
            IpvsError::NoSuchDest { .. }
        ));
        assert!(IpvsError::for_op(&add_dest, libc::ERANGE)
            .to_string()
            .starts_with("add destination 10.0.0.1:80 of service TCP 192.0.2.10:80: "));
    }
}
