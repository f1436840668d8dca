//! The `haldir` command: run the director, check a configuration, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use haldir::daemon::{self, RunOptions};

/// High-availability director for LVS direct-routing clusters.
#[derive(Debug, Parser)]
#[command(name = "haldir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the director in the foreground (logs go to stderr).
    Run {
        /// The configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Keep a JSON snapshot of the live state and counters in this file.
        #[arg(long)]
        status_file: Option<PathBuf>,
        /// Seconds between re-reads of the IPVS table (drift repair).
        #[arg(long, default_value_t = 10.0)]
        ipvs_resync: f64,
    },
    /// Validate a configuration file: exit 0 when valid, 1 printing every error.
    Check {
        /// The configuration file (TOML).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Demo: two routers in network namespaces on this machine; kill the master
    /// and watch the backup take over (needs root).
    Lab(haldir::lab::demo::DemoOptions),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALDIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match haldir_config::load_file(&config) {
            Ok(model) => {
                println!(
                    "{}: valid ({} vrrp_instance{})",
                    config.display(),
                    model.vrrp_instances.len(),
                    if model.vrrp_instances.len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            log_format,
            status_file,
            ipvs_resync,
        } => {
            init_logging(log_format);
            let model = match haldir_config::load_file(&config) {
                Ok(model) => model,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("haldir: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(daemon::run(
                model,
                RunOptions {
                    status_file,
                    ipvs_resync: std::time::Duration::from_secs_f64(ipvs_resync.max(0.1)),
                    config_path: config.clone(),
                },
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("haldir: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Lab(options) => {
            init_logging(LogFormat::Text);
            match haldir::lab::demo::run(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("haldir lab: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
