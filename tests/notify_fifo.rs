//! keepalived's notify FIFOs against real haldir processes in lab namespaces, configured
//! in keepalived.conf syntax as VyOS and sites feeding an event handler have them:
//!
//! * `notify_fifo` with a `notify_fifo_script`: haldir creates the FIFO, starts the reader
//!   (unprivileged, the FIFO's path as its last argument), writes every transition of two
//!   instances and their sync group in order (`INSTANCE "VI_1" MASTER 100`, the group's
//!   line after its members'), the STOP lines at a graceful stop, then removes the FIFO;
//! * `vrrp_notify_fifo` at a path that exists (made by the test, read by the test): used
//!   as it is, gets the same lines, and is left in place at exit;
//! * `lvs_notify_fifo`: a real server's checker going down and up gives `RS` then `VS`
//!   lines, and its `notify_down` / `notify_up` and the virtual server's `quorum_down` /
//!   `quorum_up` run in that order.
//!
//! Needs root (namespaces); skipped loudly otherwise.

use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::time::Duration;

use haldir_lab::{self as lab, skip_unless_root, Haldir, HaldirInstance, Lab, OpenDir};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

/// r2's keepalived.conf: two instances (priority 100) in sync group VG_1, both FIFOs.
fn r2_config(fifo: &Path, reader: &Path, vrrp_fifo: &Path) -> String {
    let instance = |name: &str, vrid: u8, vip: &str| {
        format!(
            "vrrp_instance {name} {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id {vrid}
    priority 100
    advert_int 0.2
    virtual_ipaddress {{
        {vip}/24
    }}
}}
"
        )
    };
    format!(
        "global_defs {{
    notify_fifo {}
    notify_fifo_script {}
    vrrp_notify_fifo {}
}}

vrrp_sync_group VG_1 {{
    group {{
        VI_1
        VI_2
    }}
}}

{}
{}",
        fifo.display(),
        reader.display(),
        vrrp_fifo.display(),
        instance("VI_1", 51, "10.0.0.100"),
        instance("VI_2", 52, "10.0.0.200"),
    )
}

/// The (kind, name, state) of each line, checking the line's form on the way.
fn parse(lines: &str) -> Vec<(String, String, String)> {
    lines
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words.len(), 4, "not a keepalived FIFO line: {line:?}");
            let name = words[1]
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or_else(|| panic!("the name is not quoted: {line:?}"));
            let priority = if words[0] == "GROUP" { "0" } else { "100" };
            assert_eq!(words[3], priority, "priority of {line:?}");
            (words[0].to_owned(), name.to_owned(), words[2].to_owned())
        })
        .collect()
}

#[test]
fn notify_fifos_receive_every_transition_in_order_and_the_created_one_is_removed() {
    if skip_unless_root(
        "notify_fifos_receive_every_transition_in_order_and_the_created_one_is_removed",
    ) {
        return;
    }
    let dir = OpenDir::new("fifo-vrrp");
    let fifo = dir.0.join("notify.fifo");
    let out = dir.0.join("reader.log");
    let reader = dir.0.join("reader.sh");
    haldir_lab::place_script(
        &reader,
        &format!(
            "echo \"reader $(id -u) $1\" > {0}.who\nexec cat \"$1\" >> {0}",
            out.display()
        ),
    )
    .unwrap();
    // The VRRP-only FIFO exists before haldir starts; the test reads it.
    let vrrp_fifo = dir.0.join("vrrp.fifo");
    nix::unistd::mkfifo(&vrrp_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let read_path = vrrp_fifo.clone();
    let test_reader = std::thread::spawn(move || {
        let mut text = String::new();
        // Blocks until haldir opens it; ends when haldir closes it at exit.
        let _ = std::fs::File::open(&read_path).and_then(|mut f| f.read_to_string(&mut text));
        text
    });

    let lab = Lab::new("notify-fifo").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("r2", &["10.0.0.2/24"]).unwrap();
    let fast = Duration::from_millis(200);
    let mut second = HaldirInstance::v3(52, 150, fast, &["10.0.0.200/24"]);
    second.name = "VI_2".into();
    let r1 = Haldir::start(
        &lab,
        "r1",
        binary(),
        &[
            HaldirInstance::v3(51, 150, fast, &["10.0.0.100/24"]),
            second,
        ],
    )
    .unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    let r2 =
        Haldir::start_with_config(&lab, "r2", binary(), &r2_config(&fifo, &reader, &vrrp_fifo))
            .unwrap();
    assert!(
        lab::wait_until(Duration::from_secs(5), || r2.states()
            == Some(vec!["BACKUP".into(), "BACKUP".into()])),
        "{}",
        r2.log()
    );
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "haldir made the FIFO"
    );

    // r1 hangs: r2's group takes over; r1 back: r2's group backs off.
    r1.freeze(true).unwrap();
    let took_over = lab::wait_until(Duration::from_secs(5), || {
        r2.states() == Some(vec!["MASTER".into(), "MASTER".into()])
    });
    r1.freeze(false).unwrap();
    assert!(took_over, "r2 never took over\n{}", r2.log());
    assert!(
        lab::wait_until(Duration::from_secs(5), || r2.states()
            == Some(vec!["BACKUP".into(), "BACKUP".into()])),
        "{}",
        r2.log()
    );
    r2.stop().unwrap();
    assert!(
        !fifo.exists(),
        "the FIFO haldir made is removed at exit\n{}",
        r2.log()
    );
    assert!(
        std::fs::metadata(&vrrp_fifo).unwrap().file_type().is_fifo(),
        "the FIFO that was there is left in place"
    );
    let from_test_fifo = test_reader.join().unwrap();
    // The reader's cat ends with the FIFO's last writer; give its output a moment.
    lab::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 12)
    });
    let from_script = std::fs::read_to_string(&out).unwrap_or_default();
    let who = std::fs::read_to_string(format!("{}.who", out.display())).unwrap_or_default();
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    assert_eq!(
        who.trim(),
        format!(
            "reader {} {}",
            String::from_utf8_lossy(&nobody.stdout).trim(),
            fifo.display()
        ),
        "the reader runs as script_user with the FIFO's path as its last argument"
    );
    assert_eq!(
        from_script, from_test_fifo,
        "both FIFOs take the VRRP lines, the same ones"
    );

    let lines = parse(&from_script);
    let sequence = |kind: &str, name: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(k, n, _)| k == kind && n == name)
            .map(|(_, _, s)| s.clone())
            .collect()
    };
    let expected = ["BACKUP", "MASTER", "BACKUP", "STOP"]
        .map(String::from)
        .to_vec();
    assert_eq!(sequence("INSTANCE", "VI_1"), expected, "{from_script}");
    assert_eq!(sequence("INSTANCE", "VI_2"), expected, "{from_script}");
    assert_eq!(sequence("GROUP", "VG_1"), expected, "{from_script}");
    assert_eq!(lines.len(), 12, "nothing else:\n{from_script}");
    // A group's line follows both of its members' lines of that state.
    for (at, (kind, _, state)) in lines.iter().enumerate() {
        if kind != "GROUP" {
            continue;
        }
        for member in ["VI_1", "VI_2"] {
            let last = lines[..at]
                .iter()
                .rev()
                .find(|(k, n, _)| k == "INSTANCE" && n == member)
                .map(|(_, _, s)| s.as_str());
            assert_eq!(
                last,
                Some(state.as_str()),
                "GROUP VG_1 {state} written before {member} was {state}:\n{from_script}"
            );
        }
    }
}

#[test]
fn an_lvs_notify_fifo_and_the_lvs_scripts_follow_real_server_and_quorum_changes() {
    if skip_unless_root(
        "an_lvs_notify_fifo_and_the_lvs_scripts_follow_real_server_and_quorum_changes",
    ) {
        return;
    }
    // notify_up / notify_down / quorum_up / quorum_down append their argument to a log.
    let dir = OpenDir::new("fifo-lvs");
    let script_log = dir.0.join("lvs-scripts.log");
    let script = dir.0.join("lvs.sh");
    haldir_lab::place_script(&script, &format!("echo \"$*\" >> {}", script_log.display())).unwrap();
    let run = |what: &str| format!("\"{} {what}\"", script.display());
    let lab = Lab::new("lvs-fifo").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("rs1", &["10.0.0.11/24"]).unwrap();
    let rs_ns = lab.ns_name("rs1");
    let listen = || {
        lab::in_netns(&rs_ns, || std::net::TcpListener::bind("10.0.0.11:8080"))
            .unwrap()
            .unwrap()
    };
    let listener = listen();
    let fifo = lab.dir().join("lvs.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let read_path = fifo.clone();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        let Ok(file) = std::fs::File::open(&read_path) else {
            return;
        };
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let config = format!(
        "global_defs {{
    lvs_notify_fifo {}
}}
vrrp_instance VI_1 {{
    interface eth0
    version 3
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        10.0.0.100/24
    }}
}}
virtual_server 10.0.0.100 8080 {{
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP
    quorum_up {}
    quorum_down {}
    real_server 10.0.0.11 8080 {{
        notify_up {}
        notify_down {}
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}
}}
",
        fifo.display(),
        run("quorum-up"),
        run("quorum-down"),
        run("rs-up"),
        run("rs-down"),
    );
    let r1 = Haldir::start_with_config(&lab, "r1", binary(), &config).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    let next = |what: &str| {
        lines_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no FIFO line for {what}\n{}", r1.log()))
    };
    drop(listener);
    assert_eq!(
        next("the real server down"),
        "RS [10.0.0.11]:tcp:8080 [10.0.0.100]:tcp:8080 DOWN"
    );
    assert_eq!(next("the quorum lost"), "VS [10.0.0.100]:tcp:8080 DOWN");
    let _listener = listen();
    assert_eq!(
        next("the real server up"),
        "RS [10.0.0.11]:tcp:8080 [10.0.0.100]:tcp:8080 UP"
    );
    assert_eq!(next("the quorum gained"), "VS [10.0.0.100]:tcp:8080 UP");
    // The scripts ran for the same changes, in the same order, one at a time.
    let expected = "rs-down\nquorum-down\nrs-up\nquorum-up\n";
    lab::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&script_log).is_ok_and(|t| t.len() >= expected.len())
    });
    assert_eq!(
        std::fs::read_to_string(&script_log).unwrap_or_default(),
        expected,
        "notify_down, quorum_down, notify_up, quorum_up in order\n{}",
        r1.log()
    );
    r1.stop().unwrap();
    assert!(
        lines_rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "an LVS FIFO takes no VRRP line (no STOP line at exit)"
    );
}
