//! The options of `haldir run` beyond the configuration itself, as the command line gave them.

use std::path::PathBuf;
use std::time::Duration;

/// Options of `haldir run` beyond the configuration itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to keep a JSON snapshot of the live status (rewritten on change).
    pub status_file: Option<PathBuf>,
    /// How often the IPVS table is re-read and repaired.
    pub ipvs_resync: Duration,
    /// The configuration file, read again on SIGHUP.
    pub config_path: PathBuf,
    /// Its syntax, as chosen at start (`--format`), kept for reloads.
    pub config_format: haldir_config::Format,
    /// The control socket for `haldir status` / `haldir reload` (`None`: none).
    pub control_socket: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`None`: off).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where SIGUSR1 / SIGUSR2 write their dumps ([`crate::dumps`]).
    pub dump_dir: PathBuf,
    /// Where state kept across restarts goes ([`crate::replay_state`]).
    pub state_dir: PathBuf,
    /// Started as root: the account to run as once up (`None`: not root, or `--user root`).
    pub user: Option<crate::privilege::DaemonUser>,
}
