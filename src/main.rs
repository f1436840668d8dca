//! The `haldir` command: run the director, check or convert a configuration,
//! or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use haldir::daemon;
use haldir::options::RunOptions;

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
        /// The configuration file (TOML or keepalived.conf).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The configuration's syntax; `auto` decides from the content.
        #[arg(long, value_enum, default_value_t = ConfigFormat::Auto)]
        format: ConfigFormat,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
        log_format: LogFormat,
        /// Keep a JSON snapshot of the live state and counters in this file.
        #[arg(long)]
        status_file: Option<PathBuf>,
        /// Seconds between re-reads of the IPVS table (drift repair).
        #[arg(long, default_value_t = 10.0)]
        ipvs_resync: f64,
        /// The control socket for `haldir status` and `haldir reload` (mode 0600;
        /// its directory is created if missing).
        #[arg(long, default_value = haldir::control::DEFAULT_SOCKET)]
        control_socket: PathBuf,
        /// Run without a control socket.
        #[arg(long)]
        no_control_socket: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9650); off by default.
        #[arg(long, value_name = "ADDR")]
        metrics_address: Option<std::net::SocketAddr>,
        /// Where SIGUSR1 writes the data dump (haldir.data) and SIGUSR2 the statistics
        /// (haldir.stats); created if missing.
        #[arg(long, value_name = "DIR", default_value = haldir::dumps::DEFAULT_DIR)]
        dump_dir: PathBuf,
        /// Where state kept across restarts and reboots goes: auth_hmac's send sequences
        /// and replay marks (auth-replay*.json); created if missing.
        #[arg(long, value_name = "DIR", default_value = haldir::replay_state::DEFAULT_DIR)]
        state_dir: PathBuf,
        /// Started as root: the unprivileged account haldir runs as once its sockets are
        /// bound, with only CAP_NET_ADMIN and CAP_NET_RAW; `root` keeps uid 0 (without
        /// capabilities beyond those two). Ignored when not started as root.
        #[arg(long, value_name = "USER", default_value = haldir::privilege::DEFAULT_USER)]
        user: String,
    },
    /// Show the running daemon's state: each VRRP instance and each virtual server.
    Status {
        /// Print the state as JSON.
        #[arg(long)]
        json: bool,
        /// The daemon's control socket.
        #[arg(long, default_value = haldir::control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Ask the running daemon to reload its configuration file: exit 0 when the
    /// new configuration was accepted, 1 printing the errors when rejected.
    Reload {
        /// The daemon's control socket.
        #[arg(long, default_value = haldir::control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Hand mastership over to the peer without stopping (make-before-break: the
    /// virtual addresses stay until the new master advertises). The instances stay
    /// backup, even with a higher priority, until `haldir handover --cancel`; a member
    /// of a sync group takes its group along. Exit 0 when done, 1 when refused.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["instances", "all"])))]
    Handover {
        /// The instances to hand over.
        #[arg(value_name = "INSTANCE")]
        instances: Vec<String>,
        /// Every instance (the address owners excepted).
        #[arg(long)]
        all: bool,
        /// Cancel an earlier handover: the instances preempt again.
        #[arg(long)]
        cancel: bool,
        /// The daemon's control socket.
        #[arg(long, default_value = haldir::control::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Validate a configuration file: exit 0 when valid, 1 printing every error.
    Check {
        /// The configuration file (TOML or keepalived.conf).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The configuration's syntax; `auto` decides from the content.
        #[arg(long, value_enum, default_value_t = ConfigFormat::Auto)]
        format: ConfigFormat,
        /// Treat warnings (keywords accepted that haldir does not act on) as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Print the TOML equivalent of a configuration (e.g. a keepalived.conf):
    /// exit 0 printing it when valid, 1 printing every error.
    Convert {
        /// The configuration file (TOML or keepalived.conf).
        file: PathBuf,
        /// The configuration's syntax; `auto` decides from the content.
        #[arg(long, value_enum, default_value_t = ConfigFormat::Auto)]
        format: ConfigFormat,
    },
    /// Check (or set up) this host as a direct-routing real server for the VIPs: each VIP
    /// on lo (/32, /128), net.ipv4.conf.all.arp_ignore >= 1 and arp_announce >= 2. Prints
    /// each problem in words; exits 1 if any remains.
    Realserver {
        /// `check` only reports; `setup` fixes what it can, then checks again.
        #[arg(value_enum)]
        action: RealserverAction,
        /// The virtual IP addresses this real server serves.
        #[arg(required = true, value_name = "VIP")]
        vips: Vec<std::net::IpAddr>,
    },
    /// Write the man page (haldir.8) or the shell completions (bash, zsh, fish) into DIR;
    /// used when building the package.
    #[command(hide = true)]
    Generate {
        /// What to write.
        #[arg(value_enum)]
        what: GenerateWhat,
        /// The directory to write into.
        dir: PathBuf,
    },
}

/// What `haldir realserver` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RealserverAction {
    /// Report the problems; change nothing.
    Check,
    /// Fix the problems, then report what remains.
    Setup,
}

/// What `haldir generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GenerateWhat {
    /// haldir.8, with the signals section.
    Man,
    /// haldir.bash, _haldir (zsh), haldir.fish.
    Completions,
}

/// The man page's SIGNALS section: what haldir does with each signal it can receive.
const MAN_SIGNALS: &[(&str, &str)] = &[
    ("SIGHUP", "Reload the configuration file (as `haldir reload`, but the result is only logged)."),
    ("SIGTERM, SIGINT", "Stop gracefully: priority-0 adverts, then the VIPs are removed."),
    ("SIGUSR1", "Write the data dump (everything `haldir status` knows, as text) to DUMP_DIR/haldir.data (0600, written then renamed); haldir keeps running."),
    ("SIGUSR2", "Write every counter to DUMP_DIR/haldir.stats (0600, written then renamed); haldir keeps running."),
    ("SIGPIPE", "Ignored (a closed control-socket or metrics client is an error on that connection only)."),
    ("SIGCHLD", "Used internally to reap notify, check and track scripts."),
    ("others", "The default action (SIGQUIT, SIGABRT: stop without the graceful steps; avoid them)."),
];

fn generate(what: GenerateWhat, dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    match what {
        GenerateWhat::Man => {
            let man = clap_mangen::Man::new(command.clone()).section("8");
            let mut page = Vec::new();
            man.render(&mut page)?;
            let mut signals = clap_mangen::roff::Roff::new();
            signals.control("SH", ["SIGNALS"]);
            for (name, meaning) in MAN_SIGNALS {
                signals.control("TP", []);
                signals.text([clap_mangen::roff::bold(*name)]);
                signals.text([clap_mangen::roff::roman(*meaning)]);
            }
            signals.control("SH", ["FILES"]);
            signals.control("TP", []);
            signals.text([clap_mangen::roff::bold("/etc/haldir/haldir.toml")]);
            signals.text([clap_mangen::roff::roman(
                "The configuration (the package's example).",
            )]);
            signals.control("TP", []);
            signals.text([clap_mangen::roff::bold("/etc/default/haldir")]);
            signals.text([clap_mangen::roff::roman(
                "The unit's options (HALDIR_CONFIG, HALDIR_OPTIONS).",
            )]);
            signals.to_writer(&mut page)?;
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("haldir-{}", sub.get_name());
                let mut sub_page = Vec::new();
                clap_mangen::Man::new(
                    sub.clone()
                        .display_name(name.clone())
                        .bin_name(name.clone()),
                )
                .section("8")
                .render(&mut sub_page)?;
                std::fs::write(dir.join(format!("{name}.8")), sub_page)?;
            }
            std::fs::write(dir.join("haldir.8"), page)
        }
        GenerateWhat::Completions => {
            use clap_complete::Shell;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut command.clone(), "haldir", dir)?;
            }
            Ok(())
        }
    }
}

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConfigFormat {
    /// Decide from the content (`[tables]` / `key = value`: TOML;
    /// `keyword {` blocks: keepalived.conf).
    Auto,
    /// haldir's TOML.
    Toml,
    /// keepalived.conf (the subset haldir implements).
    Keepalived,
}

impl From<ConfigFormat> for haldir_config::Format {
    fn from(format: ConfigFormat) -> Self {
        match format {
            ConfigFormat::Auto => haldir_config::Format::Auto,
            ConfigFormat::Toml => haldir_config::Format::Toml,
            ConfigFormat::Keepalived => haldir_config::Format::Keepalived,
        }
    }
}

/// The format of the log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// `journald` when stderr is the journal (systemd's `JOURNAL_STREAM`), else `text`.
    Auto,
    /// Human-readable lines; colour only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
    /// Lines with a syslog priority prefix (`<3>` error ... `<7>` debug), which the journal
    /// stores as the entry's priority (`journalctl -p err`); no time stamp (the journal has it).
    Journald,
}

impl From<LogFormat> for haldir::logging::Format {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Auto => haldir::logging::Format::Auto,
            LogFormat::Text => haldir::logging::Format::Text,
            LogFormat::Json => haldir::logging::Format::Json,
            LogFormat::Journald => haldir::logging::Format::Journald,
        }
    }
}

fn main() -> ExitCode {
    haldir::memory::tune_allocator();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command's output piped into `head` ends it quietly, as it does any Unix tool,
        // instead of a panic on the closed pipe. The daemon keeps SIGPIPE ignored: a
        // peer that goes away must not end it.
        // SAFETY: setting a signal's disposition to its default, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Generate { what, dir } => match generate(what, &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("haldir generate: {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Realserver { action, vips } => {
            use haldir::realserver;
            let checked = realserver::observe().and_then(|observed| {
                let found = realserver::problems(&observed, &vips);
                if action == RealserverAction::Setup && !found.is_empty() {
                    realserver::setup(&found)?;
                    let observed = realserver::observe()?;
                    return Ok((realserver::problems(&observed, &vips), observed));
                }
                Ok((found, observed))
            });
            match checked {
                Ok((found, observed)) => {
                    for note in realserver::notes(&observed) {
                        println!("note: {note}");
                    }
                    for problem in &found {
                        println!("problem: {problem}");
                    }
                    if found.is_empty() {
                        println!("real server ready for {} VIP(s)", vips.len());
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("haldir realserver: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check {
            config,
            format,
            strict,
        } => {
            // Read apart, so that the parse's garbage leaves nothing resident.
            let (loaded, warnings) = haldir::memory::built_apart(|| {
                haldir_config::load_file_with_warnings(&config, format.into())
            });
            let label = if strict {
                "error (--strict)"
            } else {
                "warning"
            };
            for warning in &warnings {
                eprintln!("{label}: {warning}");
            }
            if strict && !warnings.is_empty() && loaded.is_ok() {
                eprintln!(
                    "{}: rejected by --strict: {} warning{}",
                    config.display(),
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                );
                return ExitCode::FAILURE;
            }
            match loaded {
                Ok(model) => {
                    // Scripts enable_script_security would refuse, while it is off.
                    for line in haldir_director::script_security::warnings(&model) {
                        eprintln!("warning: {line}");
                    }
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
            }
        }
        Command::Convert { file, format } => {
            // The same reading and validation as `check`; warnings go to stderr
            // so the TOML on stdout stays clean.
            let (loaded, warnings) = haldir_config::load_file_with_warnings(&file, format.into());
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            match loaded {
                Ok(model) => {
                    let missing = haldir_config::not_converted(&model);
                    if !missing.is_empty() {
                        eprintln!(
                            "haldir convert: {} is valid, but the TOML writer cannot express these settings yet:",
                            file.display()
                        );
                        for what in missing {
                            eprintln!("  {what}");
                        }
                        return ExitCode::FAILURE;
                    }
                    println!("# haldir configuration converted from {}", file.display());
                    println!("# by `haldir convert`; see FORMAT.md for every key.");
                    println!();
                    print!("{}", haldir_config::to_toml(&model));
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            format,
            log_format,
            status_file,
            ipvs_resync,
            control_socket,
            no_control_socket,
            metrics_address,
            dump_dir,
            state_dir,
            user,
        } => {
            haldir::logging::init(log_format.into());
            haldir::memory::keep_in_small_pages();
            // Started as root: the script launcher, forked now while this process has one
            // thread and has not read the configuration (the child holds none of it); it
            // gets what the configuration's scripts need once that is validated. The
            // daemon drops to the network capabilities once it is up.
            let launcher = {
                let (path, format) = (config.clone(), haldir_config::Format::from(format));
                let source: haldir_health::launcher::PolicySource = Box::new(move || {
                    let (loaded, _) = haldir_config::load_file_with_warnings(&path, format);
                    loaded
                        .map(|model| haldir_director::script_security::launcher_policy(&model))
                        .map_err(|errors| errors.to_string())
                });
                match haldir::privilege::fork_script_launcher(source) {
                    Ok(launcher) => launcher,
                    Err(e) => {
                        eprintln!("haldir: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            // Read apart, so that the parse's garbage leaves nothing resident.
            let (loaded, warnings) = haldir::memory::built_apart(|| {
                haldir_config::load_file_with_warnings(&config, format.into())
            });
            for warning in &warnings {
                tracing::warn!("{warning}");
            }
            let model = match loaded {
                Ok(model) => model,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            // Started as root: the account to become.
            let user = if haldir::privilege::started_as_root() {
                match haldir::privilege::DaemonUser::lookup(&user) {
                    Ok(user) => user,
                    Err(e) => {
                        eprintln!("haldir: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            if let Some(launcher) = launcher {
                let policy = haldir_director::script_security::launcher_policy(&model);
                if let Err(e) = launcher.start(&policy) {
                    eprintln!("haldir: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
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
                    config_format: format.into(),
                    control_socket: (!no_control_socket).then_some(control_socket),
                    metrics_address,
                    dump_dir,
                    state_dir,
                    user,
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
        Command::Status { json, socket } => {
            match haldir::control::request(&socket, "status", std::time::Duration::from_secs(10)) {
                Ok(status) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&status).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(status) => match haldir::status::text_from_json(&status) {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("haldir status: {e} (`haldir status --json` shows it as it is)");
                        ExitCode::from(2)
                    }
                },
                Err(e) => {
                    eprintln!("haldir status: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Handover {
            instances,
            all,
            cancel,
            socket,
        } => {
            let request = serde_json::json!({
                "command": "handover",
                "instances": instances,
                "all": all,
                "cancel": cancel,
            });
            match haldir::control::request_with(
                &socket,
                &request,
                std::time::Duration::from_secs(30),
            ) {
                Ok(answer) if answer["accepted"].as_bool() == Some(true) => {
                    let names: Vec<&str> = answer["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                        .collect();
                    let what = if cancel {
                        "handover cancelled"
                    } else {
                        "handed over"
                    };
                    println!("{what}: {}", names.join(", "));
                    ExitCode::SUCCESS
                }
                Ok(answer) => {
                    eprintln!("handover refused:");
                    for error in answer["errors"].as_array().into_iter().flatten() {
                        eprintln!("{}", error.as_str().unwrap_or_default());
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("haldir handover: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Reload { socket } => {
            match haldir::control::request(&socket, "reload", std::time::Duration::from_secs(120)) {
                Ok(answer) if answer["accepted"].as_bool() == Some(true) => {
                    println!("reload accepted");
                    for key in ["kept", "updated", "replaced", "added", "removed"] {
                        let names: Vec<&str> = answer[key]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str())
                            .collect();
                        if !names.is_empty() {
                            println!("  {key}: {}", names.join(", "));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Ok(answer) => {
                    eprintln!("reload rejected; the running configuration stays:");
                    for error in answer["errors"].as_array().into_iter().flatten() {
                        eprintln!("{}", error.as_str().unwrap_or_default());
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("haldir reload: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
