//! An active-standby haldir VRRP pair on the active-active site's topology (issue 17's
//! comparison): the story that `tests/kernel_active_active.rs` asserts beside the
//! active-active one, and the demo (`haldir-lab --active-standby`) prints.
//!
//! ```text
//!   client 10.9.0.10 + 10.9.0.100-199 ── br1 ── eth1 10.9.0.1  router 10.0.0.1 eth0 ── br0
//!   (sources taken in turn)               192.0.2.10/32 via 10.0.0.10 (static, no FRR)  │
//!                                                                                        │
//!   br0: d1 10.0.0.11, d2 10.0.0.12 (haldir: VRRPv3 VI_1 holding 10.0.0.10/24 and    ─────┤
//!        192.0.2.10/32, d1 150 / d2 100, preempt; IPVS DR mh; sync daemon following VI_1)
//!        rs1..rs3 10.0.0.21-23 (VIP/32 on lo, arp_ignore 1, arp_announce 2, default via router)
//! ```
//!
//! Everything but the directors is [`super::director_site`]'s [`Segment`], as in the
//! active-active story: the same client, router, real servers, virtual server (`mh` with
//! `mh-port` and `mh-fallback`), connections and judging. The router needs no routing
//! daemon: it routes the VIP statically via the floating address 10.0.0.10, so a failover
//! reaches it as the new master's gratuitous ARP updating its neighbour entry for
//! 10.0.0.10, which an `ip -o monitor neigh` in its namespace follows. The directors keep
//! the flows by connection sync: the kernel's sync daemon on `eth0` (master on the VRRP
//! master, backup on the other) and haldir's bulk resync for a backup that (re)joins.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::director_site::{
    describe_directors, director_address, finish, open_connections, real_server_dies, run_event,
    start_together, virtual_server_config, DirectorSite, Segment, Story, Watched, ROUTER, VIP,
};
use super::haldir::{Haldir, HaldirInstance};
use super::netns::Lab;
use super::poll_until;

/// The floating address the router routes the VIP through.
pub const FLOATING_ADDRESS: &str = "10.0.0.10";
/// The VRRP instance's virtual router id.
pub const VRID: u8 = 10;
/// The pair, the preferred master first.
pub const PAIR: [&str; 2] = ["d1", "d2"];

/// RFC 5798 §6.1: a backup declares the master down after Master_Down_Interval = 3 ×
/// Master_Adver_Interval + Skew_Time, Skew_Time = ((256 - priority) × interval) / 256.
pub fn master_down_interval(advert_int: Duration, priority: u8) -> Duration {
    advert_int * 3 + advert_int * (256 - u32::from(priority)) / 256
}

/// How the pair is configured.
#[derive(Debug, Clone)]
pub struct ActiveStandbyOptions {
    /// The haldir binary the directors run.
    pub binary: PathBuf,
    /// VRRPv3 advertisement interval.
    pub advert_int: Duration,
    /// Priorities of d1 and d2.
    pub priorities: [u8; 2],
    /// `scheduler_flags` of the virtual server (`mh-port`, `mh-fallback`); empty: none written.
    pub scheduler_flags: Vec<String>,
    /// Bound on a haldir's start (its instance out of INIT): slow in a loaded emulated VM.
    pub start_timeout: Duration,
}

impl ActiveStandbyOptions {
    /// The lab's defaults: adverts every 250 ms, so that a dead master is replaced after
    /// 3 × 250 ms + skew (152 ms at priority 100) = 0.9 s, the detection budget of the
    /// active-active lab's BFD (250 ms × 3) plus the skew; a site that wants VRRP to fail
    /// over within a second runs about that (keepalived's default of 1 s takes 3.6 s).
    /// Priorities 150 and 100, preempt (the default): d1 is the primary and takes the VIP
    /// back when it returns, after its bulk resync (haldir holds the preemption until the
    /// connection table is there). The same virtual server as the active-active site's.
    pub fn new(binary: PathBuf) -> ActiveStandbyOptions {
        ActiveStandbyOptions {
            binary,
            advert_int: Duration::from_millis(250),
            priorities: [150, 100],
            scheduler_flags: vec!["mh-port".into(), "mh-fallback".into()],
            start_timeout: Duration::from_secs(180),
        }
    }
}

/// The story's options: the pair's, its pacing and bounds.
pub type StoryOptions = super::director_site::StoryOptions<ActiveStandbyOptions>;

impl StoryOptions {
    /// The pair's defaults ([`ActiveStandbyOptions::new`]) and the stories' pacing.
    pub fn new(binary: PathBuf) -> StoryOptions {
        StoryOptions::with_site(ActiveStandbyOptions::new(binary))
    }
}

/// Director `name`'s haldir configuration (TOML): the VRRP instance, the sync daemon
/// following it, the virtual server.
pub fn director_config(options: &ActiveStandbyOptions, name: &str) -> String {
    let priority = if name == PAIR[0] {
        options.priorities[0]
    } else {
        options.priorities[1]
    };
    let instance = HaldirInstance::v3(
        VRID,
        priority,
        options.advert_int,
        &[&format!("{FLOATING_ADDRESS}/24"), &format!("{VIP}/32")],
    );
    format!(
        r#"# haldir-lab active-standby: director {name} (written by lab/src/active_standby.rs)
[global_defs]
router_id = "{name}"
lvs_sync_daemon = {{ interface = "eth0", instance = "{instance_name}" }}

{vrrp_instance}
{virtual_server}"#,
        instance_name = instance.name,
        vrrp_instance = instance.render(),
        virtual_server = virtual_server_config(&options.scheduler_flags),
    )
}

/// The lab's active-standby site. See the module documentation.
pub struct ActiveStandby<'l> {
    segment: Segment<'l>,
    directors: Vec<(&'static str, Haldir<'l>)>,
}

impl<'l> ActiveStandby<'l> {
    /// Builds the router (the static route via the floating address), the client, the real
    /// servers (echo servers up) and the pair; returns once both haldirs run.
    pub fn build(
        lab: &'l Lab,
        options: &ActiveStandbyOptions,
    ) -> anyhow::Result<ActiveStandby<'l>> {
        let segment = Segment::build(lab, Watched::Neighbour(FLOATING_ADDRESS))?;
        lab.run(
            ROUTER,
            &[
                "ip",
                "route",
                "add",
                &format!("{VIP}/32"),
                "via",
                FLOATING_ADDRESS,
            ],
        )?;
        for name in PAIR {
            segment.add_director_host(name, director_address(name)?)?;
        }
        let started = start_together(&PAIR, |name| {
            Haldir::start_with_timeout(
                lab,
                name,
                &options.binary,
                &director_config(options, name),
                &[],
                options.start_timeout,
            )
        });
        let mut directors = Vec::new();
        for (name, haldir) in PAIR.into_iter().zip(started) {
            directors.push((name, haldir?));
        }
        Ok(ActiveStandby { segment, directors })
    }

    /// The router, client and real servers.
    pub fn segment(&self) -> &Segment<'l> {
        &self.segment
    }

    /// Director `name`'s haldir.
    pub fn director(&self, name: &str) -> anyhow::Result<&Haldir<'l>> {
        self.directors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h)
            .with_context(|| format!("no director {name}"))
    }

    /// Whether `master` is MASTER and the other BACKUP, with the kernel's master sync daemon
    /// in `master` and the backup one in the other.
    pub fn roles_are(&self, master: &str) -> bool {
        self.directors.iter().all(|(name, haldir)| {
            let (state, daemon) = if *name == master {
                ("MASTER", "master sync daemon")
            } else {
                ("BACKUP", "backup sync daemon")
            };
            haldir.state().as_deref() == Some(state)
                && self.segment.sync_daemons(name).contains(daemon)
        })
    }
}

impl<'l> DirectorSite<'l> for ActiveStandby<'l> {
    /// VRRP state transitions of both haldirs so far.
    fn departures(&self) -> usize {
        self.directors
            .iter()
            .map(|(_, haldir)| usize::try_from(haldir.counter("transitions")).unwrap_or(0))
            .sum()
    }

    /// The router's neighbour entry's changes and both haldirs' states and logs.
    fn describe(&self) -> String {
        describe_directors(
            &self.segment,
            self.directors.iter().map(|(name, haldir)| (*name, haldir)),
        )
    }

    fn directors_running(&self) -> Vec<(&'static str, bool)> {
        let running = |(name, haldir): &(&'static str, Haldir<'l>)| (*name, haldir.is_running());
        self.directors.iter().map(running).collect()
    }

    fn segment(&self) -> &Segment<'l> {
        &self.segment
    }

    fn segment_mut(&mut self) -> &mut Segment<'l> {
        &mut self.segment
    }
}

/// Runs the active-standby story in a fresh lab, narrating through `say`; returns the
/// figures. Fails (with everything needed to see why) only when the site cannot be built
/// or an event's change at the router never comes; the caller judges the figures.
///
/// 1. d1's link is cut at the switch (the master dies whole): d2 takes over; the router's
///    neighbour entry for the floating address moves to d2's MAC;
/// 2. d1's link returns: d1 takes the VIP back (preempt, after its bulk resync);
/// 3. rs2's service stops.
pub fn run_story(options: &StoryOptions, say: &mut dyn FnMut(&str)) -> anyhow::Result<Story> {
    let started = Instant::now();
    let lab = Lab::new("active-standby")?;
    let mut story = Story::default();
    say("building: router (static route via 10.0.0.10), client, rs1-rs3, d1 + d2 (haldir VRRP)");
    let mut site = ActiveStandby::build(&lab, &options.site)?;
    let up_at = Instant::now();
    if !poll_until(options.appear_bound, Duration::from_millis(250), || {
        site.roles_are("d1")
    }) {
        bail!(
            "d1 did not become MASTER with d2 BACKUP\n{}",
            site.describe()
        );
    }
    story.converged_after = Some(up_at.elapsed());
    for name in PAIR {
        story
            .sync_daemons
            .push((name.to_owned(), site.segment.sync_daemons(name)));
    }
    say(&format!(
        "d1 MASTER, d2 BACKUP {:.1} s after the haldirs ran; sync daemons {:?}",
        story.converged_after.unwrap_or_default().as_secs_f64(),
        story.sync_daemons
    ));
    let traffic = open_connections(&site, options, &mut story, say)?;
    let d1_mac = lab.mac("d1")?;
    let d2_mac = lab.mac("d2")?;
    let at = |mac: &str| vec![mac.to_owned()];
    if site.segment.watch().nexthops() != at(&d1_mac) {
        bail!(
            "the router does not reach {FLOATING_ADDRESS} at d1's MAC {d1_mac}\n{}",
            site.describe()
        );
    }

    // 1. The master dies whole: its link goes down at the switch. 2. It comes back and
    //    takes the VIP back once it has the connection table.
    let events = [
        (
            "d1's link cut (the master dies whole; haldir not told)",
            false,
            &d2_mac,
            options.reroute_bound,
        ),
        (
            "d1's link restored (d1 preempts after its bulk resync)",
            true,
            &d1_mac,
            options.appear_bound,
        ),
    ];
    for (name, up, master_mac, bound) in events {
        let event = run_event(
            &mut site,
            &traffic,
            options,
            name,
            |site| site.segment.set_director_link("d1", up),
            Some(&|hops: &[String]| hops == at(master_mac).as_slice()),
            bound,
        )?;
        story.record(event, say);
        say(&format!(
            "VRRP states: d1 {:?}, d2 {:?}",
            site.director("d1")?.state(),
            site.director("d2")?.state()
        ));
    }
    let resync = site
        .director("d1")?
        .status()
        .map(|s| s["bulk_resync"]["last_received"].clone())
        .unwrap_or_default();
    say(&format!(
        "d1's bulk resync when it rejoined: {resync}; roles back: {}",
        site.roles_are("d1")
    ));
    // 3. A real server dies: only its connections may go.
    real_server_dies(&mut site, &traffic, options, &mut story, say)?;

    finish(&mut story, &site.segment, traffic);
    drop(site);
    drop(lab);
    story.elapsed = started.elapsed();
    Ok(story)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_declares_the_master_down_after_three_adverts_and_its_skew() {
        assert_eq!(
            master_down_interval(Duration::from_millis(250), 100),
            Duration::from_nanos(902_343_750)
        );
        assert_eq!(
            master_down_interval(Duration::from_secs(1), 100),
            Duration::from_micros(3_609_375)
        );
    }

    #[test]
    fn both_directors_run_one_vrrp_instance_with_the_floating_address_and_the_vip() {
        let options = ActiveStandbyOptions::new(PathBuf::from("haldir"));
        let d1 = director_config(&options, "d1");
        let d2 = director_config(&options, "d2");
        for config in [&d1, &d2] {
            assert!(
                config.contains(r#"virtual_ipaddress = ["10.0.0.10/24", "192.0.2.10/32"]"#),
                "{config}"
            );
            assert!(config.contains("advert_int = 0.25"), "{config}");
            assert!(
                config.contains(r#"lvs_sync_daemon = { interface = "eth0", instance = "VI_1" }"#),
                "{config}"
            );
            assert!(config.contains(r#"scheduler_flags = ["mh-port", "mh-fallback"]"#));
            assert!(config.contains(r#"lb_algo = "mh""#));
        }
        assert!(d1.contains("priority = 150"), "{d1}");
        assert!(d2.contains("priority = 100"), "{d2}");
    }
}
