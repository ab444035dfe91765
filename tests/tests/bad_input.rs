//! The agent refuses bad input with a message naming what is wrong, before touching the kernel.

use std::process::{Command, Output};

use lineage_tests::{agent_binary, require_root};

fn agent(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .args(args)
        .output()
        .expect("running lineage-agent")
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

fn assert_fails_naming(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(needle),
        "stderr does not name {needle:?}:\n{stderr}"
    );
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let f = config_file("[capture]\nring_bufer_bytes = 65536\n");
    assert_fails_naming(
        &agent(&["run", "--config", f.path().to_str().unwrap()]),
        "ring_bufer_bytes",
    );
}

#[test]
fn wrong_type_is_an_error_naming_the_key() {
    let f = config_file("[capture]\npoll_interval_ms = \"fast\"\n");
    assert_fails_naming(
        &agent(&["run", "--config", f.path().to_str().unwrap()]),
        "poll_interval_ms",
    );
}

#[test]
fn invalid_ring_size_is_rejected() {
    assert_fails_naming(
        &agent(&["run", "--ring-buffer-bytes", "100000"]),
        "capture.ring_buffer_bytes",
    );
}

#[test]
fn unknown_flag_is_an_error() {
    assert_fails_naming(&agent(&["run", "--colour"]), "--colour");
}

#[test]
fn missing_btf_is_named() {
    require_root();
    let f = config_file("[kernel]\nbtf_path = \"/nonexistent/vmlinux\"\n");
    assert_fails_naming(
        &agent(&["run", "--config", f.path().to_str().unwrap()]),
        "no BTF",
    );
}

#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    require_root();
    // Drop to nobody with no capabilities at all.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(agent_binary())
        .arg("run")
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    assert_fails_naming(&out, "CAP_BPF");
}

#[test]
fn print_default_config_is_valid_and_documented() {
    let out = agent(&["config", "print-default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ring_buffer_bytes = 16777216"));
    let f = config_file(&text);
    let check = agent(&["config", "check", "--config", f.path().to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn unwritable_data_dir_is_named() {
    require_root();
    // A path under a regular file can never be created, even by root.
    let out = agent(&["run", "--data-dir", "/etc/hostname/lineage"]);
    assert_fails_naming(&out, "/etc/hostname/lineage");
}
