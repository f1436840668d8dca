//! The health → IPVS policy on parsed configurations and set verdicts: removal and
//! `inhibit_on_failure`, `misc_dynamic` weights, quorum with hysteresis, the sorry server,
//! `alpha`.

use std::collections::HashMap;

use haldir_config::Model;
use haldir_ipvs::model::{ServiceKey, Table};

use super::*;

fn model(text: &str) -> Model {
    haldir_config::parse_toml(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn web() -> ServiceKey {
    ServiceKey::Address {
        protocol: haldir_ipvs::model::Protocol::Tcp,
        addr: "192.0.2.10".parse().unwrap(),
        port: 80,
    }
}

/// (ip, weight) of each destination of the web service, sorted.
fn dests(table: &Table) -> Vec<(String, u16, u32)> {
    let mut list: Vec<(String, u16, u32)> = table.services[&web()]
        .1
        .iter()
        .map(|(k, d)| (k.addr.to_string(), k.port, d.weight))
        .collect();
    list.sort();
    list
}

const FOUR: &str = r#"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_kind = "DR"
quorum = 6
hysteresis = 2
sorry_server = "10.0.0.250 8080"
[[virtual_server.real_server]]
ip = "10.0.0.1"
weight = 3
TCP_CHECK = {}
[[virtual_server.real_server]]
ip = "10.0.0.2"
weight = 3
inhibit_on_failure = true
TCP_CHECK = {}
[[virtual_server.real_server]]
ip = "10.0.0.3"
weight = 2
MISC_CHECK = { misc_path = "/bin/true", misc_dynamic = true }
[[virtual_server.real_server]]
ip = "10.0.0.4"
weight = 1
"#;

/// Each real server's checkers' verdicts, in the order of its checks.
type Verdicts = HashMap<RealServerKey, Vec<CheckVerdict>>;

/// Sets the verdict of the (only) checker of real server `ip`.
fn set(model: &Model, verdicts: &mut Verdicts, ip: &str, up: bool, weight: Option<u32>) {
    let vs = &model.virtual_servers[0];
    let rs = vs
        .real_servers
        .iter()
        .find(|rs| rs.ip.to_string() == ip)
        .unwrap();
    verdicts.insert(
        (rs.ip, rs.port),
        vec![CheckVerdict { up, weight }; rs.checks.len()],
    );
}

fn table(model: &Model, verdicts: &Verdicts, quorum: &mut HashMap<ServiceKey, bool>) -> Table {
    desired_table(
        &model.virtual_servers,
        &|_, _, rs| {
            real_server_state(
                rs,
                verdicts.get(&(rs.ip, rs.port)).map_or(&[], Vec::as_slice),
            )
        },
        quorum,
    )
}

#[test]
fn down_servers_leave_or_get_weight_zero_and_dynamic_weights_apply() {
    let m = model(FOUR);
    let mut verdicts = HashMap::new();
    let mut quorum = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.1".into(), 80, 3),
            ("10.0.0.2".into(), 80, 3),
            ("10.0.0.3".into(), 80, 2),
            ("10.0.0.4".into(), 80, 1),
        ],
        "all up (the server without a checker counts as up); no sorry server"
    );
    set(&m, &mut verdicts, "10.0.0.1", false, None);
    set(&m, &mut verdicts, "10.0.0.2", false, None);
    set(&m, &mut verdicts, "10.0.0.3", true, Some(7));
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.2".into(), 80, 0),
            ("10.0.0.3".into(), 80, 7),
            ("10.0.0.4".into(), 80, 1),
        ],
        "down: removed, or weight 0 with inhibit_on_failure; misc_dynamic weight 7; live 8 ≥ 6 - 2"
    );
}

#[test]
fn an_mh_service_keeps_a_down_server_at_weight_zero_without_inhibit_on_failure() {
    let text = FOUR
        .replace("lb_kind = \"DR\"", "lb_kind = \"DR\"\nlb_algo = \"mh\"")
        .replace(
            "quorum = 6\nhysteresis = 2\nsorry_server = \"10.0.0.250 8080\"\n",
            "",
        );
    let m = model(&text);
    let mut verdicts = HashMap::new();
    let mut quorum = HashMap::new();
    for ip in ["10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    set(&m, &mut verdicts, "10.0.0.1", false, None);
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.1".into(), 80, 0),
            ("10.0.0.2".into(), 80, 3),
            ("10.0.0.3".into(), 80, 2),
            ("10.0.0.4".into(), 80, 1),
        ],
        "10.0.0.1 is down and has no inhibit_on_failure: with mh it stays, quiesced"
    );
    // The same file with wrr: the down server leaves, as keepalived does.
    let wrr = model(&text.replace("lb_algo = \"mh\"", "lb_algo = \"wrr\""));
    assert_eq!(dests(&table(&wrr, &verdicts, &mut HashMap::new())).len(), 3);
}

#[test]
fn quorum_with_hysteresis_switches_to_the_sorry_server_and_back() {
    let m = model(FOUR);
    let mut verdicts = HashMap::new();
    let mut quorum = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    table(&m, &verdicts, &mut quorum); // live 9: up
    set(&m, &mut verdicts, "10.0.0.1", false, None);
    // live 6 - 3 = 6 (3 + 2 + 1): still ≥ 4.
    assert!(quorum[&web()]);
    set(&m, &mut verdicts, "10.0.0.2", false, None);
    // live 3 (2 + 1) < 6 - 2: lost; the sorry server is the only live destination, the
    // inhibited real server stays with weight 0.
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
    assert!(!quorum[&web()]);
    set(&m, &mut verdicts, "10.0.0.2", true, None);
    // live 6: at quorum but below quorum + hysteresis (8): still lost.
    let t = table(&m, &verdicts, &mut quorum);
    assert!(!quorum[&web()]);
    assert_eq!(
        dests(&t),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
    set(&m, &mut verdicts, "10.0.0.1", true, None);
    // live 9 ≥ 8: regained, the sorry server leaves.
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![
            ("10.0.0.1".into(), 80, 3),
            ("10.0.0.2".into(), 80, 3),
            ("10.0.0.3".into(), 80, 2),
            ("10.0.0.4".into(), 80, 1),
        ]
    );
}

#[test]
fn sorry_server_inhibit_keeps_it_at_weight_zero_and_no_sorry_server_keeps_the_servers() {
    let m = model(&FOUR.replace(
        "sorry_server = \"10.0.0.250 8080\"",
        "sorry_server = \"10.0.0.250 8080\"\nsorry_server_inhibit = true",
    ));
    let mut verdicts = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, true, None);
    }
    let t = table(&m, &verdicts, &mut HashMap::new());
    assert!(dests(&t).contains(&("10.0.0.250".into(), 8080, 0)));

    // Without a sorry server, losing the quorum changes nothing in the table.
    let m = model(&FOUR.replace("sorry_server = \"10.0.0.250 8080\"", ""));
    let mut verdicts = HashMap::new();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        set(&m, &mut verdicts, ip, false, None);
    }
    let mut quorum = HashMap::new();
    assert_eq!(
        dests(&table(&m, &verdicts, &mut quorum)),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.4".into(), 80, 1)]
    );
    assert!(!quorum[&web()]);
}

#[test]
fn alpha_servers_start_down() {
    let m = model(&FOUR.replace("quorum = 6", "alpha = true\nquorum = 6"));
    let t = table(&m, &HashMap::new(), &mut HashMap::new());
    // Only the unchecked server is up (live 1 < 6): the sorry server stands in.
    assert_eq!(
        dests(&t),
        vec![("10.0.0.2".into(), 80, 0), ("10.0.0.250".into(), 8080, 1)]
    );
}

const OUT_OF_ORDER: &str = r#"
[[virtual_server]]
ip = "192.0.2.30"
port = 80
lb_algo = "wrr"
[[virtual_server.real_server]]
ip = "10.0.0.1"
[[virtual_server]]
ip = "192.0.2.10"
port = 80
lb_algo = "sh"
[[virtual_server.real_server]]
ip = "10.0.0.3"
[[virtual_server.real_server]]
ip = "10.0.0.1"
weight = 4
[[virtual_server]]
ip = "192.0.2.20"
port = 80
[[virtual_server.real_server]]
ip = "10.0.0.1"
"#;

#[test]
fn virtual_servers_listed_out_of_order_are_all_in_the_table_with_their_settings() {
    let m = model(OUT_OF_ORDER);
    let mut quorum = HashMap::new();
    let t = table(&m, &HashMap::new(), &mut quorum);
    let addresses: Vec<String> = t
        .services
        .keys()
        .map(|key| match key {
            ServiceKey::Address { addr, .. } => addr.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(addresses, ["192.0.2.10", "192.0.2.20", "192.0.2.30"]);
    assert_eq!(t.services[&web()].0.scheduler, "sh");
    assert_eq!(
        dests(&t),
        vec![("10.0.0.1".into(), 80, 4), ("10.0.0.3".into(), 80, 1)]
    );
    assert_eq!(t.dest_count(), 4);
    assert_eq!(quorum.len(), 3);
}

#[test]
fn a_dropped_virtual_server_leaves_no_quorum_state_behind() {
    let mut quorum = HashMap::new();
    table(&model(OUT_OF_ORDER), &HashMap::new(), &mut quorum);
    assert_eq!(quorum.len(), 3);
    let t = table(&model(FOUR), &HashMap::new(), &mut quorum);
    assert_eq!(t.service_count(), 1);
    assert_eq!(quorum.keys().collect::<Vec<_>>(), [&web()]);
}
