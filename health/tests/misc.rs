//! MISC_CHECK with real scripts: exit codes, misc_dynamic weights, a hanging script (and its
//! child) killed at misc_timeout, the unprivileged user, no shell unless asked, and config-time
//! validation of missing / non-executable scripts.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use haldir_health::misc::{
    split_command_line, validate, MiscCheck, MiscCheckConfig, MiscCommand, MiscError, ScriptUser,
};
use haldir_health::{CheckId, CheckOutcome, CheckTiming, Checker, Transition};

fn misc(argv: Vec<String>, timeout: Duration, dynamic: bool) -> MiscCheck {
    let mut config = MiscCheckConfig::new(MiscCommand::Exec(argv), timeout);
    config.dynamic = dynamic;
    MiscCheck::new(config).unwrap()
}

fn path_str(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

#[tokio::test]
async fn exit_zero_is_up_and_any_other_status_is_down() {
    let dir = temp_dir("exit");
    let s = script(&dir, "exit.sh", "exit \"$1\"");
    for (code, up) in [(0, true), (1, false), (2, false), (255, false)] {
        let c = misc(vec![path_str(&s), code.to_string()], ms(2000), false);
        let outcome = c.check().await;
        assert_eq!(outcome.is_up(), up, "exit {code}: {outcome:?}");
        if let CheckOutcome::Down(reason) = outcome {
            assert!(reason.contains(&format!("status {code}")), "{reason}");
        }
    }
}

#[tokio::test]
async fn misc_dynamic_maps_exit_2_to_255_to_weight_minus_2_and_1_to_down() {
    let dir = temp_dir("dyn");
    let s = script(&dir, "exit.sh", "exit \"$1\"");
    let run = |code: u32| {
        let c = misc(vec![path_str(&s), code.to_string()], ms(2000), true);
        async move { c.check().await }
    };
    assert_eq!(run(0).await, CheckOutcome::Up);
    assert!(!run(1).await.is_up());
    assert_eq!(run(2).await, CheckOutcome::UpWithWeight(0));
    assert_eq!(run(12).await, CheckOutcome::UpWithWeight(10));
    assert_eq!(run(255).await, CheckOutcome::UpWithWeight(253));
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purpose; it would be reaped by init.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_hanging_script_and_its_children_are_killed_at_misc_timeout() {
    let dir = temp_dir("hang");
    let pids = dir.join("pids");
    let s = script(
        &dir,
        "hang.sh",
        &format!("sleep 300 &\necho $$ $! > {}\nwait", pids.display()),
    );
    let c = misc(vec![path_str(&s)], ms(500), false);
    let started = Instant::now();
    let CheckOutcome::Down(reason) = c.check().await else {
        panic!("a hanging script must be down")
    };
    let took = started.elapsed();
    assert!(reason.contains("timed out after 500ms"), "{reason}");
    assert!(took >= ms(500) && took < ms(1500), "{took:?}");
    let text = std::fs::read_to_string(&pids).unwrap();
    let ids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    // The script (reaped by the checker) and its background child (same process group) are gone.
    let deadline = Instant::now() + ms(2000);
    while ids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        tokio::time::sleep(ms(20)).await;
    }
    for pid in ids {
        assert!(!alive(pid), "pid {pid} survived the timeout");
    }
}

#[tokio::test]
async fn the_script_runs_as_the_unprivileged_script_user() {
    let dir = temp_dir("uid");
    let out = dir.join("id");
    let s = script(
        &dir,
        "id.sh",
        &format!("id -u > {0}; id -g >> {0}; id -G >> {0}", out.display()),
    );
    let c = misc(vec![path_str(&s)], ms(2000), false);
    assert_eq!(c.check().await, CheckOutcome::Up);
    let ids = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = ids.lines().collect();
    if nix::unistd::geteuid().is_root() {
        let user = ScriptUser::resolve(None, None).unwrap();
        assert_ne!(user.uid, 0);
        assert_eq!(lines[0], user.uid.to_string());
        assert_eq!(lines[1], user.gid.to_string());
        // Supplementary groups dropped: only the primary group remains.
        assert_eq!(lines[2], user.gid.to_string());
        assert_eq!(c.user().uid, user.uid);
    } else {
        assert_eq!(lines[0], nix::unistd::geteuid().as_raw().to_string());
    }
}

#[tokio::test]
async fn arguments_are_never_interpreted_by_a_shell_unless_asked() {
    let dir = temp_dir("noshell");
    let out = dir.join("args");
    let marker = dir.join("pwned");
    let s = script(
        &dir,
        "args.sh",
        &format!(
            "for a in \"$@\"; do printf '%s|' \"$a\"; done > {}",
            out.display()
        ),
    );
    let misc_path = format!(
        "{} 'two words' $HOME ;touch\\ {} \"`id`\"",
        s.display(),
        marker.display()
    );
    let argv = split_command_line(&misc_path).unwrap();
    let c = misc(argv, ms(2000), false);
    assert_eq!(c.check().await, CheckOutcome::Up);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("two words|$HOME|;touch {}|`id`|", marker.display())
    );
    assert!(!marker.exists(), "a shell ran the command");
    // With a shell, explicitly: the same syntax is interpreted.
    let shell = MiscCheck::new(MiscCheckConfig::new(
        MiscCommand::Shell(format!("true; touch {}", marker.display())),
        ms(2000),
    ))
    .unwrap();
    assert_eq!(shell.check().await, CheckOutcome::Up);
    assert!(marker.exists());
}

#[tokio::test]
async fn a_missing_or_non_executable_script_is_a_validation_error() {
    let dir = temp_dir("validate");
    let missing = dir.join("nope.sh");
    let config = MiscCheckConfig::new(
        MiscCommand::parse(&format!("{} arg", missing.display())).unwrap(),
        ms(1000),
    );
    assert_eq!(validate(&config), Err(MiscError::NotFound(missing.clone())));
    assert!(validate(&config)
        .unwrap_err()
        .to_string()
        .contains("does not exist"));

    let s = script(&dir, "noexec.sh", "exit 0");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o744)).unwrap();
    let config = MiscCheckConfig::new(MiscCommand::Exec(vec![path_str(&s)]), ms(1000));
    // Executable by its owner (root) only, not by the unprivileged script user.
    if nix::unistd::geteuid().is_root() {
        assert!(matches!(
            validate(&config),
            Err(MiscError::NotExecutable { .. })
        ));
    }
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(validate(&config), Ok(()));

    let config = MiscCheckConfig::new(MiscCommand::Exec(vec![path_str(&dir)]), ms(1000));
    assert_eq!(validate(&config), Err(MiscError::NotAFile(dir.clone())));
    let mut config = MiscCheckConfig::new(MiscCommand::Exec(vec!["true".into()]), ms(1000));
    assert_eq!(validate(&config), Ok(()), "found on PATH");
    config.user = Some("no-such-user-haldir".into());
    assert!(matches!(validate(&config), Err(MiscError::UnknownUser(_))));
    assert_eq!(MiscCommand::parse("  "), Err(MiscError::EmptyCommand));
}

#[tokio::test]
async fn misc_dynamic_weight_changes_reach_the_scheduler_events() {
    let dir = temp_dir("dynsched");
    let code_file = dir.join("code");
    std::fs::write(&code_file, "7").unwrap();
    let s = script(
        &dir,
        "weight.sh",
        &format!("exit $(cat {})", code_file.display()),
    );
    let (scheduler, mut events) = scheduler();
    let timing = CheckTiming {
        delay_loop: ms(100),
        retry: 0,
        warmup: Some(Duration::ZERO),
        ..CheckTiming::default()
    };
    let c = misc(vec![path_str(&s)], ms(2000), true);
    assert_eq!(c.default_retry(), 0);
    scheduler.add(CheckId(5), Arc::new(c), timing);
    let e = next_event(&mut events, ms(3000)).await;
    assert_eq!(e.transition, Transition::WeightChanged { weight: 5 });
    std::fs::write(&code_file, "1").unwrap();
    let e = next_event(&mut events, ms(3000)).await;
    assert!(matches!(e.transition, Transition::Down { .. }));
    std::fs::write(&code_file, "22").unwrap();
    let e = next_event(&mut events, ms(3000)).await;
    assert_eq!(e.transition, Transition::Up { weight: Some(20) });
    scheduler.shutdown(false).await;
}
