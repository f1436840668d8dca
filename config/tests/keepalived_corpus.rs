//! The keepalived.conf corpus (issue 13): files written for this project,
//! each reproducing the constructs of one class of real deployment (see
//! `keepalived/corpus/README.md`). For every file the test does what a
//! migrating user does: `check` (read and validate, with warnings), `convert`
//! (write TOML), `check` on the TOML, and compares the two models. Files that
//! use a keepalived feature haldir does not implement yet are listed in
//! [`EXPECTED_FAILURES`] with the error they must fail with, so the test
//! notices when one becomes readable (then move it out of the list).
//!
//! Scripts the files name are written `%SCRIPTS%/name`; the test copies each
//! file into a temporary directory with `%SCRIPTS%` replaced by a directory
//! of executable stubs it creates.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use haldir_config::{load_file_with_warnings, not_converted, parse_toml, to_toml, Format, Model};

/// Files that must fail, each with a piece of its first expected error: the
/// keyword haldir does not implement yet, and why.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "no_vip_cloud_notify.conf",
        "is missing `virtual_ipaddress`; add e.g. `virtual_ipaddress = [\"192.0.2.10/24\"]` (an instance without addresses is not supported: its adverts would carry an address count of 0, and RFC 5798 §5.2.5 sets the minimum to 1)",
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keepalived/corpus")
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

/// `model` with its source locations blanked (`Model::without_locations`).
fn without_locs(model: Model) -> Model {
    model.without_locations()
}

/// A temporary directory, removed on drop (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("haldir-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("scripts")).unwrap();
        // The files included by `includes_split.conf`, at the same relative path.
        let includes = path.join("corpus_include.d");
        std::fs::create_dir_all(&includes).unwrap();
        for entry in std::fs::read_dir(corpus_dir().join("corpus_include.d")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), includes.join(entry.file_name())).unwrap();
        }
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies `conf` into `dir` with `%SCRIPTS%` pointing at stubs made for
/// every script it names; returns the copy's path.
fn staged(conf: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(conf).unwrap();
    let scripts = dir.join("scripts");
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("%SCRIPTS%/") {
        let rest = &text[at + "%SCRIPTS%/".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        names.insert(rest[..end].to_owned());
    }
    for name in names {
        let stub = scripts.join(&name);
        std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let copy = dir.join(conf.file_name().unwrap());
    std::fs::write(&copy, text.replace("%SCRIPTS%", scripts.to_str().unwrap())).unwrap();
    copy
}

#[test]
fn every_corpus_file_is_read_converted_and_rechecked_or_fails_as_expected() {
    let files = corpus();
    assert!(files.len() >= 40, "the corpus has {} files", files.len());
    let dir = TempDir::new();
    let mut read = 0;
    let mut problems = Vec::new();
    for conf in &files {
        let name = conf.file_name().unwrap().to_str().unwrap();
        let copy = staged(conf, &dir.0);
        // `haldir check`.
        let (model, _warnings) = load_file_with_warnings(&copy, Format::Keepalived);
        let expected = EXPECTED_FAILURES.iter().find(|(f, _)| *f == name);
        let model = match (model, expected) {
            (Ok(_), Some((_, why))) => {
                problems.push(format!(
                    "{name}: now readable; it was expected to fail with {why:?}: move it out of EXPECTED_FAILURES"
                ));
                continue;
            }
            (Err(errors), Some((_, why))) => {
                if !errors.to_string().contains(why) {
                    problems.push(format!(
                        "{name}: expected an error containing {why:?}, got:\n{errors}"
                    ));
                }
                continue;
            }
            (Err(errors), None) => {
                problems.push(format!("{name}: haldir check fails:\n{errors}"));
                continue;
            }
            (Ok(model), None) => model,
        };
        // `haldir convert`, then `haldir check` on its output.
        let missing = not_converted(&model);
        if !missing.is_empty() {
            problems.push(format!("{name}: convert cannot express {missing:?}"));
            continue;
        }
        let toml = to_toml(&model);
        match parse_toml(&toml, "converted.toml") {
            Ok(again) if without_locs(again.clone()) == without_locs(model.clone()) => read += 1,
            Ok(_) => problems.push(format!(
                "{name}: the converted TOML reads as another model:\n{toml}"
            )),
            Err(errors) => problems.push(format!(
                "{name}: check rejects convert's output:\n{errors}\n{toml}"
            )),
        }
    }
    for (file, _) in EXPECTED_FAILURES {
        if !files.iter().any(|f| f.ends_with(file)) {
            problems.push(format!(
                "{file}: in EXPECTED_FAILURES but not in the corpus"
            ));
        }
    }
    eprintln!(
        "keepalived corpus: read {read} of {} ({} expected failures)",
        files.len(),
        EXPECTED_FAILURES.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
