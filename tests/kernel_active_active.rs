//! Active-active directors behind an ECMP router (issue 17), and an active-standby VRRP pair
//! on the same topology for the comparison, on the VM's real IPVS (skipped, loudly, outside
//! the VM; `bash tests/vm/run.sh active_active` runs both, one after the other).
//!
//! The site is `haldir_lab::director_site`: a client with 100 source addresses, an upstream
//! router, three real servers in DR and 300 long-lived connections. Each event is judged on
//! the connections established before it (lost: reset, EOF, error, or silent beyond 20 s,
//! which covers TCP's retransmission backoff after a reroute), and on 20 new connections
//! after it.
//!
//! `active_active_...`: the router runs FRR (zebra + bgpd + bfdd, eBGP, multipath over the
//! directors, L4 hashing); three directors d1-d3 (haldir: IPVS DR `mh` with TCP_CHECKs,
//! `[announce]`, the sync daemons; FRR announcing the VIP, BFD 250 ms × 3). The connections
//! spread over the directors and the real servers; then:
//!
//! 1. d2's link is cut at the switch (haldir not told): the router's log says BFD took d2's
//!    session down, and the route lost d2 within 1 s of the cut plus the time the VM was
//!    stalled meanwhile (BFD detects 0.5-0.75 s after d2's last packet), 0 lost;
//! 2. d2's link returns: d2 back in the route, 0 lost;
//! 3. d4 joins: four next hops, 0 lost;
//! 4. d1's checks are refused (its quorum lost): d1 withdraws, 0 lost; the checks pass again:
//!    d1 is back, 0 lost;
//! 5. SIGTERM to d3's haldir: d3 leaves the route before its drain ends (haldir still runs),
//!    0 lost;
//! 6. rs2's service stops: exactly the connections on rs2 are lost, none other; the route
//!    keeps every director (the quorum holds); new connections avoid rs2.
//!
//! `active_standby_...`: the router routes the VIP statically via a floating address that a
//! haldir VRRP pair holds (d1 150, d2 100, adverts 250 ms, preempt; the same virtual server;
//! the sync daemon following the instance, bulk resync). Every connection is scheduled by
//! the master; then:
//!
//! 1. d1's link is cut at the switch: d2 takes over, the router's neighbour entry for the
//!    floating address moves to d2's MAC within VRRP's Master_Down_Interval (0.9 s) plus
//!    0.25 s and the VM's stalls meanwhile, 0 lost (synced connections);
//! 2. d1's link returns: d1 takes the VIP back after its bulk resync, 0 lost;
//! 3. rs2's service stops: exactly rs2's connections are lost; no VRRP transition.
//!
//! Every figure is printed (the reroute times with the VM's stalls, the spread, the worst
//! silence), and once both stories ran, a table of the two side by side.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use haldir_lab::director_site::{Event, Story, DYING_REAL_SERVER};
use haldir_lab::vm::in_vm_or_skip;
use haldir_lab::{active_active, active_standby, frr};

/// The bound on the router's reroute after a director dies: BFD at 250 ms × 3
/// detects 0.5-0.75 s after the cut (its last packet came up to 250 ms before), bgpd and
/// zebra then take milliseconds. The emulated VM, on a busy host, is not run for tenths of
/// a second at a time, and every daemon in it waits that long; the test grants exactly the
/// stalled time it measured between the cut and the reroute.
const BFD_REROUTE: Duration = Duration::from_secs(1);

/// What the bounds grant beyond the detection time (BFD's 0.75 s at most, VRRP's
/// Master_Down_Interval) for the rest of the way: bgpd and zebra, or the new master's
/// gratuitous ARP, then the router's kernel and its `ip monitor`. The same margin for both
/// sites; BFD_REROUTE is BFD's 0.75 s plus it.
const PROCESSING: Duration = Duration::from_millis(250);

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_active_active: {text}");
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_haldir"))
}

fn assert_nothing_lost(event: &Event, story: &str) {
    assert_eq!(
        event.lost_total(),
        0,
        "{}: {} of {} established connections lost (lost {:?}, stalled {:?})\n{}\n{story}",
        event.name,
        event.lost_total(),
        event.established,
        event.lost,
        event.stalled,
        event.lost_why.join("\n")
    );
}

fn assert_new_connections_work(event: &Event, story: &str) {
    assert_eq!(
        event.new_up, event.new_opened,
        "{}: only {} of {} new connections came up\n{story}",
        event.name, event.new_up, event.new_opened
    );
}

#[test]
fn active_active_directors_lose_no_connection_when_one_dies_returns_or_joins() {
    let test = "kernel_active_active::active_active_directors_lose_no_connection_when_one_dies_returns_or_joins";
    if !in_vm_or_skip(test) {
        return;
    }
    if !frr::is_installed() {
        let line = format!("SKIPPED {test}: FRR (zebra, bgpd, bfdd, vtysh) is not installed\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let options = active_active::StoryOptions::new(binary().to_path_buf());
    let story = active_active::run_story(&options, &mut say).unwrap_or_else(|e| panic!("{e:#}"));
    let text = format!("{story:#?}");
    say(&format!(
        "router sessions:\n{}\nrouter neighbours:\n{}sync daemons: {:?}; driver lags {:?}; \
         stalls {:?}; the story took {:.0} s",
        story.router_adjacency_changes.join("\n"),
        story.router_neighbours,
        story.sync_daemons,
        story.driver_lags,
        story.stalled_for,
        story.elapsed.as_secs_f64()
    ));
    compare("active-active (ECMP, BGP + BFD)", &story);

    // haldir's [announce] turned sloppy TCP on in every director.
    for (director, sloppy) in &story.sloppy_tcp {
        assert_eq!(sloppy, "1", "sloppy_tcp in {director}\n{text}");
    }
    // The spread: every director and every real server carries a fair part of the 300.
    assert_eq!(story.opened.0, story.opened.1, "{text}");
    let fair = options.connections / 10;
    for (director, scheduled) in &story.connections_by_director {
        assert!(
            *scheduled as usize >= fair,
            "director {director} scheduled {scheduled} of {} connections\n{text}",
            options.connections
        );
    }
    assert_eq!(story.by_server.len(), 3, "{text}");
    for (server, count) in &story.by_server {
        assert!(
            *count >= fair,
            "{server} holds {count} of {}\n{text}",
            options.connections
        );
    }

    let [cut, back, joined, quorum_lost, quorum_back, sigterm, server_died] =
        story.events.as_slice()
    else {
        panic!("the story has not seven events\n{text}");
    };
    // 1. BFD takes a dead director out of the router's route within 1 s (and the VM's
    //    stalls), and nothing is lost.
    let reroute = cut.reroute.expect("the route changed");
    let (stalled, worst_stall) = cut.stalled_for;
    say(&format!(
        "{}: rerouted after {reroute:?}; bound {BFD_REROUTE:?} + {stalled:?} stalled in the \
         window (longest stall {worst_stall:?})",
        cut.name
    ));
    assert!(
        reroute <= BFD_REROUTE + stalled,
        "{}: rerouted after {reroute:?}, beyond {BFD_REROUTE:?} + the {stalled:?} the VM was \
         stalled meanwhile\n{text}",
        cut.name
    );
    let d2 = active_active::director_address("d2").unwrap();
    assert!(
        story
            .router_adjacency_changes
            .iter()
            .any(|l| l.contains(&format!("sent to neighbor {d2} 6/10 (Cease/BFD Down)"))),
        "the router's session to d2 did not go down by BFD: {:?}\n{text}",
        story.router_adjacency_changes
    );
    for event in [cut, back, joined, quorum_lost, quorum_back, sigterm] {
        assert_nothing_lost(event, &text);
        assert_new_connections_work(event, &text);
    }
    assert_eq!(joined.nexthops.len(), 4, "{text}");
    // 5. SIGTERM: withdrawn while haldir still drained (it exits only after the drain).
    let withdrawn = sigterm.reroute.expect("the route changed");
    assert!(
        withdrawn < options.site.drain,
        "SIGTERM: withdrawn at the router after {withdrawn:?}, not before the drain of {:?} \
         ended\n{text}",
        options.site.drain
    );
    // 6. A dead real server: exactly its own connections go; the route keeps everyone.
    assert_only_the_dead_servers_connections_lost(&story, server_died, &text);
}

/// The real server's death cost exactly its own connections, changed nothing at the router
/// and no director let the VIP go; the new connections avoid it.
fn assert_only_the_dead_servers_connections_lost(story: &Story, server_died: &Event, text: &str) {
    let lost = server_died.lost_by_server();
    assert_eq!(
        lost.keys().collect::<Vec<_>>(),
        if story.dead_server_share > 0 {
            vec![DYING_REAL_SERVER]
        } else {
            vec![]
        },
        "{}: connections lost on other real servers\n{text}",
        server_died.name
    );
    assert_eq!(
        server_died.lost_total(),
        story.dead_server_share,
        "{}: lost {} but {DYING_REAL_SERVER} held {}\n{text}",
        server_died.name,
        server_died.lost_total(),
        story.dead_server_share
    );
    assert_eq!(server_died.reroute, None, "{text}");
    assert_eq!(
        server_died.withdrawals, 0,
        "{}: no director lets the VIP go (the quorum holds; the master stays)\n{text}",
        server_died.name
    );
    assert_new_connections_work(server_died, text);
    assert!(
        !server_died.new_by_server.contains_key(DYING_REAL_SERVER),
        "{text}"
    );
}

#[test]
fn active_standby_pair_on_the_same_topology_as_active_active_loses_no_connection_when_the_master_dies(
) {
    let test = "kernel_active_active::active_standby_pair_on_the_same_topology_as_active_active_loses_no_connection_when_the_master_dies";
    if !in_vm_or_skip(test) {
        return;
    }
    let options = active_standby::StoryOptions::new(binary().to_path_buf());
    let story = active_standby::run_story(&options, &mut say).unwrap_or_else(|e| panic!("{e:#}"));
    let text = format!("{story:#?}");
    say(&format!(
        "router neighbours:\n{}sync daemons: {:?}; driver lags {:?}; stalls {:?}; the story \
         took {:.0} s",
        story.router_neighbours,
        story.sync_daemons,
        story.driver_lags,
        story.stalled_for,
        story.elapsed.as_secs_f64()
    ));
    compare("active-standby (VRRP pair)", &story);

    // The spread: the master scheduled every connection and forwards every packet.
    assert_eq!(story.opened.0, story.opened.1, "{text}");
    let scheduled = |director: &str, of: &[(String, u64)]| {
        of.iter()
            .find(|(d, _)| d == director)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(
        scheduled("d1", &story.connections_by_director),
        options.connections as u64,
        "the master d1 schedules every connection\n{text}"
    );
    assert_eq!(
        scheduled("d2", &story.connections_by_director),
        0,
        "the backup d2 schedules none\n{text}"
    );
    assert_eq!(
        scheduled("d2", &story.packets_by_director),
        0,
        "the backup d2 forwards nothing\n{text}"
    );

    let [cut, back, server_died] = story.events.as_slice() else {
        panic!("the story has not three events\n{text}");
    };
    // 1. The master dies whole: d2 takes over within VRRP's Master_Down_Interval (and the
    //    margin and the VM's stalls; the router's neighbour entry moves to d2's MAC), and the
    //    synced connections survive.
    // 2. It returns and takes the VIP back after its bulk resync: nothing lost either.
    let reroute = cut.reroute.expect("the neighbour entry changed");
    let (stalled, worst_stall) = cut.stalled_for;
    let detection =
        active_standby::master_down_interval(options.site.advert_int, options.site.priorities[1]);
    let bound = detection + PROCESSING + stalled;
    say(&format!(
        "{}: rerouted after {reroute:?}; bound {detection:?} (Master_Down_Interval) + \
         {PROCESSING:?} + {stalled:?} stalled in the window (longest stall {worst_stall:?})",
        cut.name
    ));
    assert!(
        reroute <= bound,
        "{}: d2 took over at the router after {reroute:?}, beyond {bound:?}\n{text}",
        cut.name
    );
    for event in [cut, back] {
        assert!(event.reroute.is_some(), "{}\n{text}", event.name);
        assert_nothing_lost(event, &text);
        assert_new_connections_work(event, &text);
    }
    // 3. A dead real server: exactly its own connections go; the master stays.
    assert_only_the_dead_servers_connections_lost(&story, server_died, &text);
}

/// `d` in whole milliseconds.
fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The figures of each story that ran, for the comparison table.
static STORIES: Mutex<Vec<(&str, Story)>> = Mutex::new(Vec::new());

/// Keeps `story`'s figures; once both stories ran, prints them side by side.
fn compare(name: &'static str, story: &Story) {
    let mut stories = STORIES.lock().unwrap_or_else(|e| e.into_inner());
    stories.push((name, story.clone()));
    if stories.len() == 2 {
        say(&format!(
            "the two sites side by side:\n{}",
            comparison_table(&stories)
        ));
    }
}

/// One row a figure, one column a story: the director's death and return, the real
/// server's death, the spread.
fn comparison_table(stories: &[(&str, Story)]) -> String {
    let event = |story: &Story, prefix: &str| -> Option<Event> {
        story
            .events
            .iter()
            .find(|e| e.name.contains(prefix))
            .cloned()
    };
    type Cell = fn(&Story, &Event) -> String;
    let rows: [(&str, &str, Cell); 9] = [
        (
            "director dies (link cut): reroute at the router",
            "link cut",
            |_, e| e.reroute.map_or("-".into(), ms),
        ),
        (
            "  the VM stalled in that window (in all, longest)",
            "link cut",
            |_, e| format!("{}, {}", ms(e.stalled_for.0), ms(e.stalled_for.1)),
        ),
        ("  connections lost (of established)", "link cut", |_, e| {
            format!("{} of {}", e.lost_total(), e.established)
        }),
        ("  worst silence of a connection", "link cut", |_, e| {
            e.worst_gap
                .map_or("-".into(), |g| format!("{:.1} s", g.as_secs_f64()))
        }),
        ("  new connections after", "link cut", |_, e| {
            format!("{}/{}", e.new_up, e.new_opened)
        }),
        (
            "director returns: back at the router",
            "link restored",
            |_, e| e.reroute.map_or("-".into(), ms),
        ),
        (
            "  connections lost (of established)",
            "link restored",
            |_, e| format!("{} of {}", e.lost_total(), e.established),
        ),
        ("real server dies: lost (its share)", "rs2", |s, e| {
            format!("{} ({})", e.lost_total(), s.dead_server_share)
        }),
        ("  new connections after", "rs2", |_, e| {
            format!("{}/{}", e.new_up, e.new_opened)
        }),
    ];
    let mut lines = vec![format!(
        "| {:<50} | {} |",
        "",
        stories
            .iter()
            .map(|(name, _)| format!("{name:<32}"))
            .collect::<Vec<_>>()
            .join(" | ")
    )];
    for (label, prefix, cell) in rows {
        let cells: Vec<String> = stories
            .iter()
            .map(|(_, story)| {
                let text = event(story, prefix).map_or("-".into(), |e| cell(story, &e));
                format!("{text:<32}")
            })
            .collect();
        lines.push(format!("| {label:<50} | {} |", cells.join(" | ")));
    }
    let spread: Vec<String> = stories
        .iter()
        .map(|(_, story)| {
            let per: Vec<String> = story
                .connections_by_director
                .iter()
                .map(|(d, n)| format!("{d} {n}"))
                .collect();
            format!("{:<32}", per.join(", "))
        })
        .collect();
    lines.push(format!(
        "| {:<50} | {} |",
        "spread: connections scheduled per director",
        spread.join(" | ")
    ));
    let took: Vec<String> = stories
        .iter()
        .map(|(_, story)| format!("{:<32}", format!("{:.0} s", story.elapsed.as_secs_f64())))
        .collect();
    lines.push(format!(
        "| {:<50} | {} |",
        "the story took",
        took.join(" | ")
    ));
    lines.join("\n")
}
