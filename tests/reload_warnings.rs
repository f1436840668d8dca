//! SIGHUP reload logs the configuration's warnings (keywords accepted that
//! haldir does not act on) as `haldir run` does at start, each naming its
//! `file:line:col`: a keyword that appears only in the reloaded file is
//! warned about in the log after the reload. Needs root.

use std::time::Duration;

use haldir_lab::{is_root, Haldir, Lab};

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// One VRRPv3 instance on eth0; `global` goes into global_defs.
fn keepalived_conf(global: &str) -> String {
    format!(
        "global_defs {{\n    router_id LB1\n{global}}}\nvrrp_instance VI_1 {{\n    interface eth0\n    version 3\n    virtual_router_id 51\n    priority 150\n    advert_int 0.1\n    virtual_ipaddress {{\n        10.0.0.100/24\n    }}\n}}\n"
    )
}

#[test]
fn a_reload_logs_the_warnings_of_the_new_file_with_their_lines() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_reload_logs_the_warnings_of_the_new_file_with_their_lines: needs root for network namespaces"
        );
        return;
    }
    let lab = Lab::new("reload-warn").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let r1 = Haldir::start_with_args(
        &lab,
        "r1",
        binary(),
        &keepalived_conf(""),
        &["--format", "keepalived"],
    )
    .unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(
        !r1.log().contains("smtp_server"),
        "no warning before the reload: {}",
        r1.log()
    );
    // Line 3, column 5 of the reloaded file: a mail setting haldir does not act on.
    let reloaded = keepalived_conf("    smtp_server 192.0.2.25\n");
    assert!(r1.reload(&reloaded).unwrap(), "{}", r1.log());
    let log = r1.log();
    assert!(
        log.lines()
            .any(|line| line.contains("r1-haldir.toml:3:5: `smtp_server`")),
        "the reload's warning names the keyword and its line: {log}"
    );
}
