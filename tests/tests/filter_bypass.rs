//! The path filter judges the file the kernel opened, not the text the caller wrote: seven
//! spellings of one directory (doubled slashes, `..`, `/proc/self/root`, `/proc/self/cwd`, a
//! relative name, a symlink, the plain path) are each caught by an exclude rule and each
//! recorded under its real path by an include rule.
//!
//! Calls that leave no fd (unlink, rename, chmod, …) are still judged on the name as given:
//! some of these spellings escape path rules there (docs/COVERAGE.md says so).

use std::{path::Path, process::Command};

use lineage_tests::{chain_entries, filtered_by_rule, Agent, Run};

/// The spellings an attacker can use for `dir/f<i>`, run from `dir`'s parent.
fn spellings(dir: &Path, link: &Path) -> Vec<String> {
    let d = dir.to_str().unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap();
    vec![
        format!("{d}/f0"),
        format!("/{}//f1", d.replace('/', "//")),
        format!("{d}/../{name}/f2"),
        format!("/proc/self/root{d}/f3"),
        format!("{name}/f4"),
        format!("{}/f5", link.to_str().unwrap()),
        format!("/proc/self/cwd/{name}/f6"),
    ]
}

/// Creates each file through its spelling (and one file outside the directory) in one process.
fn open_all(cwd: &Path, names: &[String], outside: &Path) {
    let script = "import os, sys\nfor p in sys.argv[1:]:\n    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))\n";
    let ok = Command::new("python3")
        .current_dir(cwd)
        .args(["-c", script])
        .args(names)
        .arg(outside)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the opens failed");
}

struct Setup {
    _tmp: tempfile::TempDir,
    parent: std::path::PathBuf,
    dir: std::path::PathBuf,
    link: std::path::PathBuf,
    outside: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn setup(rule: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().canonicalize().unwrap();
    let dir = parent.join("guarded");
    std::fs::create_dir(&dir).unwrap();
    let link = parent.join("alias");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let config = parent.join("agent.toml");
    std::fs::write(
        &config,
        format!("[filter]\n{rule} = [{:?}]\n", dir.to_str().unwrap()),
    )
    .unwrap();
    Setup {
        outside: parent.join("outside"),
        _tmp: tmp,
        parent,
        dir,
        link,
        config,
    }
}

fn run_with(s: &Setup) -> Run {
    let agent = Agent::start(&["--config", s.config.to_str().unwrap()]);
    open_all(&s.parent, &spellings(&s.dir, &s.link), &s.outside);
    agent.stop()
}

/// The id the policy on the chain gives to `<rule>: <dir>`.
fn rule_id(entries: &[serde_json::Value], rule: &str, dir: &Path) -> u64 {
    let policy = entries
        .iter()
        .find(|e| e["kind"] == "FILTER" && e["form"] == "policy")
        .expect("the policy is on the chain");
    let text = policy["text"].as_str().unwrap();
    let wanted = format!("\"{rule}: {}\"", dir.to_str().unwrap());
    text.lines()
        .find(|l| l.ends_with(&wanted))
        .and_then(|l| l.split(" = ").next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rule {wanted} in the policy:\n{text}"))
}

fn under<'a>(run: &'a Run, dir: &'a Path) -> Vec<&'a serde_json::Value> {
    let d = format!("{}/", dir.to_str().unwrap());
    run.of_kind("file")
        .filter(|e| e["path"].as_str().is_some_and(|p| p.starts_with(&d)))
        .collect()
}

#[test]
fn every_spelling_of_an_excluded_directory_is_excluded_and_counted() {
    let s = setup("exclude_paths");
    let run = run_with(&s);
    let leaked = under(&run, &s.dir);
    assert!(
        leaked.is_empty(),
        "recorded despite the exclude rule: {leaked:#?}"
    );
    assert!(
        run.of_kind("file")
            .any(|e| e["path"] == s.outside.to_str().unwrap()),
        "a file outside the excluded directory is still recorded"
    );
    let entries = chain_entries(&run.data_dir);
    let id = rule_id(&entries, "exclude_paths", &s.dir);
    assert_eq!(
        filtered_by_rule(&entries, id),
        7,
        "each of the seven spellings is counted against the exclude rule"
    );
}

#[test]
fn every_spelling_of_an_included_directory_is_recorded_under_its_real_path() {
    let s = setup("include_paths");
    let run = run_with(&s);
    let recorded = under(&run, &s.dir);
    for i in 0..7 {
        let want = s.dir.join(format!("f{i}"));
        assert!(
            recorded
                .iter()
                .any(|e| e["op"] == "open" && e["path"] == want.to_str().unwrap()),
            "the open of f{i} (spelled {:?}) is not recorded as {}; recorded: {recorded:#?}",
            spellings(&s.dir, &s.link)[i],
            want.display()
        );
    }
    assert!(
        !run.of_kind("file")
            .any(|e| e["path"] == s.outside.to_str().unwrap()),
        "a file outside the included directory is not recorded"
    );
}
