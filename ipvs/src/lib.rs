//! haldir's IPVS layer: the kernel's "IPVS" generic-netlink family and what is
//! built on it.
//!
//! - [`netlink`]: the codec, every command and attribute of
//!   `include/uapi/linux/ip_vs.h`, plugged into `genetlink`.
//! - [`client`]: an async client ([`IpvsClient`]) with clear errors and a
//!   pipelined batch apply.
//! - [`model`]: the desired (or read) table as key-indexed maps.
//! - [`diff`]: the pure function from (desired, actual) to ordered operations.
//! - [`sync_wire`]: the kernel's connection-sync protocol (version 1) and
//!   haldir's bulk-resync request / done messages; [`conn_table`]: the
//!   `/proc/net/ip_vs_conn` parser and its mapping to sync records.
//! - [`resync`]: haldir's bulk resync of the connection table between routers, as a
//!   sans-IO machine, and its status.
//! - [`apply`]: the [`Reconciler`], which reads the kernel table, applies the
//!   diff through an [`Applier`] and repairs drift when called again.
//! - [`drift`]: cheap drift detection from `/proc/net/ip_vs`
//!   ([`drift::WatchedClient`]): only the services that changed are read.
//! - [`keeper`]: the loop that keeps the kernel in step with a changing
//!   desired table ([`keep_in_step`]), with its retry backoff.
//! - [`ownership`]: which services haldir owns, kept in a file across crashes, so a
//!   restarted haldir deletes what it owned and never what it did not.
//!
//! The crate depends on no other haldir crate: the director's policy
//! (`haldir_director`) turns the configuration into a [`model::Table`].

pub mod apply;
pub mod client;
pub mod conn_table;
pub mod diff;
pub mod drift;
pub mod keeper;
pub mod model;
pub mod netlink;
pub mod ownership;
pub mod resync;
pub mod sync_wire;

pub use apply::{Applier, DesiredTable, MemoryApplier, OpFailure, ReconcileReport, Reconciler};
pub use client::{IpvsClient, IpvsError};
pub use diff::{diff, Op};
pub use keeper::{keep_in_step, KeeperHooks, RetryBackoff};
pub use model::{DestKey, Destination, Service, ServiceKey, Table};
