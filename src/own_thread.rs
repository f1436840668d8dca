//! Tasks that run on a thread of their own, with a runtime of their own.
//!
//! Two kinds of work must not share the runtime thread that times the VRRP adverts:
//! a request whose kernel handler runs for seconds inside the `sendmsg` (stopping the
//! kernel's IPVS sync daemon waits for its thread to end: 3.7 s was seen under
//! emulation, during which no advert could be sent and no instance could start; a
//! start's IPVS table, 50,000 operations at 10,000 virtual servers, is about a second of
//! kernel work under emulation), and work whose CPU time is measured to pace it (the
//! status's kernel reader). Users: the sync daemon's control, the IPVS keeper, the
//! status's kernel reader.

use std::future::Future;

use tokio::task::JoinHandle;

/// Runs the future `make` returns on a blocking-pool thread with a single-threaded
/// runtime; its netlink connections, spawned from inside it, run there too. Start it only
/// once the daemon has its final privileges: capabilities are per thread.
pub fn spawn<F, Fut>(what: &'static str, make: F) -> JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(make()),
            Err(e) => tracing::error!("{what}: cannot start its runtime: {e}"),
        }
    })
}
