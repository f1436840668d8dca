//! The two-NIC LVS direct-routing appliance end to end, on the VM's real IPVS and sync
//! daemon (skipped, loudly, outside the VM; `bash tests/vm/run.sh kernel_appliance` runs
//! it). The story is `haldir_lab::appliance::run_story`, the same one the demo
//! (`haldir-lab`) tells:
//!
//! ```text
//!  client ── gw ── public bridge: r1, r2 eth0 (VRRP VI_PUBLIC, VIP 10.1.0.100)
//!            gw ── private bridge: r1, r2 eth1 (VI_PRIVATE 10.2.0.100, DR, sync daemon),
//!                                  rs1, rs2 (VIP on lo; they answer via gw, not the routers)
//! ```
//!
//! r1 (priority 150) and r2 (100) run haldir with a sync group over both NICs, a DR
//! virtual server VIP:7000 over rs1/rs2 with TCP_CHECKs and `lvs_sync_daemon` on eth1.
//! The client holds 200 connections, each exchanging a message every second (the
//! emulated VM cannot carry the demo's 100 ms pace for 200) and checking the echo.
//!
//! 1. kill -9 of haldir on r1 (its kernel keeps the VIPs and the IPVS table): r2 takes both
//!    VIPs, r2's gratuitous ARP for the VIP is seen on the public bridge, the first client
//!    packet r2 forwards to a real server is seen on the private bridge, the gateway's
//!    neighbour entry for the VIP names r2, and every one of the 200 connections keeps exchanging through r2 (none lost:
//!    no reset, EOF, error or wrong echo; none stalled: silent for more than
//!    [`STALL_THRESHOLD`], past that long after the event, not counting time the client
//!    program itself was not scheduled, which a loaded, software-emulated VM causes and
//!    which is printed);
//!    20 new connections come up through r2;
//! 2. haldir on r1 starts again (it removes the VIPs its killed predecessor left) and
//!    preempts: none of the 220 connections is lost or stalled, 20 more come up.
//!
//! The first test leaves r1's links up: r1's kernel keeps forwarding what still reaches it
//! (its VIPs and IPVS table outlive the daemon), so the connections' survival there proves
//! the daemon's kill -9 harms nothing, not that r2 moved the traffic; the wire evidence
//! above is what proves the move. The second test cuts r1 off both segments right after
//! the kill -9: the old master is really gone, and the connections survive only through
//! r2 (no extras there: the first test covers them).
//!
//! Printed (uncaptured): each takeover's timeline (last and first adverts, gratuitous ARP,
//! last packet forwarded by the old master, first by the new), the longest silence any
//! connection saw, the connections lost and stalled.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use haldir_lab::appliance::{describe_leg, run_story, StoryOptions};
use haldir_lab::vm::in_vm_or_skip;

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "kernel_appliance: {text}");
}

/// The story's assertions on every leg: the move seen from outside (gratuitous ARP, first
/// forwarded packet, the gateway's neighbour entry), then the client's connections.
fn assert_story(story: &haldir_lab::appliance::Story, options: &StoryOptions) {
    say(&format!(
        "{} messages echoed; connections by real server {:?}; {} failed while being opened \
         (replaced, not judged); {:.1} s in all",
        story.exchanges,
        story.by_server,
        story.setup_failures.len(),
        story.elapsed.as_secs_f64()
    ));
    assert_eq!(story.legs.len(), 2);
    let mut expected = options.connections;
    for leg in &story.legs {
        let summary = describe_leg(leg);
        assert!(
            leg.garp_seen.is_some(),
            "{}: no gratuitous ARP for the VIP from {} on the public bridge after the event\n{summary}",
            leg.name,
            leg.new_master
        );
        assert!(
            leg.first_forwarded.is_some(),
            "{}: no client packet forwarded by {} to a real server after the event\n{summary}",
            leg.name,
            leg.new_master
        );
        assert!(
            leg.gateway_follows_new,
            "{}: the gateway's neighbour entry for the VIP does not name {}\n{summary}",
            leg.name, leg.new_master
        );
        assert_eq!(
            leg.established, expected,
            "{}: connections alive at the event\n{summary}",
            leg.name
        );
        assert!(
            leg.lost.is_empty(),
            "{}: {} connections lost\n{summary}",
            leg.name,
            leg.lost.len()
        );
        assert!(
            leg.stalled.is_empty(),
            "{}: {} connections stalled\n{summary}",
            leg.name,
            leg.stalled.len()
        );
        assert_eq!(leg.survived, leg.established, "{summary}");
        assert_eq!(
            leg.new_up, leg.new_opened,
            "{}: new connections through {}\n{summary}",
            leg.name, leg.new_master
        );
        expected += leg.new_opened;
    }
    // Both real servers served: the scheduler spread the connections.
    assert!(
        ["rs1", "rs2"]
            .iter()
            .all(|rs| story.by_server.get(*rs).is_some_and(|&n| n > 0)),
        "{:?}",
        story.by_server
    );
}

/// The story's options for the VM: a message per connection every second, not every
/// 100 ms: under software emulation the VM forwards a few hundred messages per second
/// through the five hops of the appliance (measured: ~250/s on a loaded host), not 2000.
fn vm_options() -> StoryOptions {
    let mut options = StoryOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_haldir")));
    options.traffic.interval = Duration::from_secs(1);
    options.stall_threshold = STALL_THRESHOLD;
    // Longer than the threshold, so that a black-holed connection shows.
    options.settle = STALL_THRESHOLD + Duration::from_secs(1);
    options
}

/// A connection silent this long (the client's own unscheduled time taken out) is stalled.
/// The longest silence is about 0.8 s on an idle host and 2.1–2.6 s with `stress-ng --cpu 2`
/// beside the VM; one stressed run saw 4.3 s at r1's return, when the echo servers and the
/// routers inside the emulated VM were starved too (only the client's starvation is
/// measured). 6 s is over 7 × the idle figure; the precise figure is `bench/failover`'s
/// client gap. (The demo on the host keeps the stricter 3 s.)
const STALL_THRESHOLD: Duration = Duration::from_secs(6);

/// kill -9 of haldir only: r1's kernel keeps its VIPs, IPVS table and links, so it may
/// still forward what reaches it. What this proves: r2 takes over and moves the traffic
/// (its GARP and its first forwarded packet are asserted, and the gateway follows it), no
/// connection is lost or stalled through the change, and r1's return preempts cleanly.
#[test]
fn kill_9_of_haldir_on_the_master_moves_the_traffic_to_r2_and_back_without_losing_a_connection() {
    if !in_vm_or_skip(
        "kernel_appliance::kill_9_of_haldir_on_the_master_moves_the_traffic_to_r2_and_back_without_losing_a_connection",
    ) {
        return;
    }
    let options = vm_options();
    let story = run_story(&options, &mut |text| say(text)).expect("the story ran to its end");
    assert!(story.legs.iter().all(|l| !l.old_master_isolated));
    assert_story(&story, &options);
}

/// kill -9 of haldir on r1 and r1 cut off both segments at the switch: the old master is
/// really gone, so every connection that survives went through r2.
#[test]
fn connections_survive_through_r2_when_the_master_is_really_gone() {
    if !in_vm_or_skip(
        "kernel_appliance::connections_survive_through_r2_when_the_master_is_really_gone",
    ) {
        return;
    }
    let mut options = vm_options();
    options.isolate_old_master = true;
    options.extras = false;
    let story = run_story(&options, &mut |text| say(text)).expect("the story ran to its end");
    assert!(
        story.legs[0].old_master_isolated,
        "the first leg cut r1 off both segments"
    );
    assert_story(&story, &options);
}
