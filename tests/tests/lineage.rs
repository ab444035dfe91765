//! Process lineage from the real kernel programs: exec, fork, exit, snapshot, argv limits.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};

use lineage_tests::{run_to_end, Agent, Run};
use serde_json::Value;

fn exec_with_argv<'a>(run: &'a Run, argv: &[&str]) -> &'a Value {
    run.of_kind("exec")
        .find(|e| Run::argv(e) == argv)
        .unwrap_or_else(|| panic!("no exec event with argv {argv:?}"))
}

#[test]
fn known_tree_links_parents_and_exit_codes() {
    let agent = Agent::start(&[]);
    let outer = run_to_end(
        Command::new("sh")
            .args(["-c", "sh -c \"/bin/echo alpha beta gamma\""])
            .stdout(Stdio::null()),
    );
    let run = agent.stop();

    let outer_exec = run.execs_of(outer);
    assert_eq!(
        outer_exec.len(),
        1,
        "one exec for the outer sh (pid {outer})"
    );
    let outer_exec = outer_exec[0];
    assert_eq!(
        Run::argv(outer_exec),
        ["sh", "-c", "sh -c \"/bin/echo alpha beta gamma\""]
    );

    let inner = exec_with_argv(&run, &["sh", "-c", "/bin/echo alpha beta gamma"]);
    assert_eq!(
        inner["parent_exec_id"], outer_exec["exec_id"],
        "inner sh's parent is the outer sh"
    );
    assert_eq!(inner["ppid"], outer);

    let echo = exec_with_argv(&run, &["/bin/echo", "alpha", "beta", "gamma"]);
    assert_eq!(
        echo["parent_exec_id"], inner["exec_id"],
        "echo's parent is the inner sh"
    );
    // The binary is the file the kernel executed (its resolved path), the filename as given.
    let echo_file = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(echo["binary"], echo_file.to_str().unwrap());
    assert_eq!(echo["filename"], "/bin/echo");
    assert_eq!(echo["ancestors"][0], inner["exec_id"]);
    assert_eq!(echo["ancestors"][1], outer_exec["exec_id"]);

    for exec in [outer_exec, inner, echo] {
        let exit = run
            .of_kind("exit")
            .find(|e| e["exec_id"] == exec["exec_id"] && e["process"] == true)
            .unwrap_or_else(|| panic!("no process exit for {}", exec["exec_id"]));
        assert_eq!(exit["code"], 0, "exit code of {}", exec["argv"]);
    }
}

#[test]
fn exit_codes_and_signals() {
    let agent = Agent::start(&[]);
    let coded = run_to_end(Command::new("sh").args(["-c", "exit 3"]));
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let killed = sleeper.id();
    let run = agent.stop();

    let exit_of = |tgid: u32| {
        run.of_kind("exit")
            .find(|e| e["tgid"] == tgid && e["process"] == true)
            .unwrap_or_else(|| panic!("no exit event for {tgid}"))
            .clone()
    };
    assert_eq!(exit_of(coded)["code"], 3);
    let k = exit_of(killed);
    assert_eq!(k["signal"], 9);
    assert!(k.get("code").is_none());
}

#[test]
fn exec_storm_is_complete_or_declares_its_loss() {
    const N: usize = 2000;
    let agent = Agent::start(&[]);
    let script = format!("i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done");
    let shell = run_to_end(Command::new("sh").args(["-c", &script]));
    let run = agent.stop();

    let shell_exec = run.execs_of(shell)[0]["exec_id"].clone();
    let seen = run
        .of_kind("exec")
        .filter(|e| e["parent_exec_id"] == shell_exec && e["filename"] == "/bin/true")
        .count();
    let lost = run.declared_loss("exec");
    println!("exec storm: {seen} of {N} execs seen, {lost} exec records declared lost");
    assert_eq!(run.unexplained_loss(), 0, "no unexplained loss");
    if lost == 0 {
        assert_eq!(seen, N, "no loss declared, so every exec must be there");
    } else {
        assert!(
            seen + lost as usize >= N,
            "{seen} seen + {lost} declared lost < {N}"
        );
    }
}

#[test]
fn loss_under_a_stalled_reader_is_declared_exactly() {
    // A small ring and a reader that is stopped: the kernel must count every record it could
    // not reserve, and the agent must report the gap as declared, explained loss.
    const N: usize = 300;
    let agent = Agent::start(&["--ring-buffer-bytes", "65536"]);
    agent.signal(libc::SIGSTOP);
    let script = format!("i=0; while [ $i -lt {N} ]; do /bin/true; i=$((i+1)); done");
    let shell = run_to_end(Command::new("sh").args(["-c", &script]));
    agent.signal(libc::SIGCONT);
    let run = agent.stop();

    let shell_exec = run.execs_of(shell).first().map(|e| e["exec_id"].clone());
    let seen = run
        .of_kind("exec")
        .filter(|e| {
            shell_exec.is_some()
                && e["parent_exec_id"] == *shell_exec.as_ref().unwrap()
                && e["filename"] == "/bin/true"
        })
        .count();
    let lost = run.declared_loss("exec");
    let missing: u64 = run
        .of_kind("loss")
        .map(|e| e["missing"].as_u64().unwrap())
        .sum();
    let failures: u64 = run
        .of_kind("loss")
        .flat_map(|e| e["failures"].as_array().cloned().unwrap_or_default())
        .map(|f| f[1].as_u64().unwrap())
        .sum();
    println!("stalled reader: {seen} of {N} execs seen, {lost} exec records declared lost, {missing} records missing, {failures} reservation failures");
    assert!(
        lost > 0,
        "a 64 KiB ring with a stopped reader must overflow"
    );
    assert_eq!(
        run.unexplained_loss(),
        0,
        "every missing record is explained by a kernel counter"
    );
    assert_eq!(
        missing, failures,
        "sequence gaps and reservation failures agree exactly"
    );
    assert!(
        seen + lost as usize >= N,
        "{seen} seen + {lost} declared lost < {N}"
    );
}

#[test]
fn failed_execs_carry_errno() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = dir.path().join("does-not-exist");

    let agent = Agent::start(&[]);
    assert!(Command::new(&missing).status().is_err());
    assert!(Command::new(&not_exec).status().is_err());
    let run = agent.stop();

    let failure = |path: &std::path::Path| {
        run.of_kind("exec_failed")
            .find(|e| e["filename"] == path.to_str().unwrap())
            .unwrap_or_else(|| panic!("no exec_failed for {}", path.display()))
            .clone()
    };
    let enoent = failure(&missing);
    assert_eq!(
        (enoent["errno"].as_i64(), enoent["error"].as_str()),
        (Some(2), Some("ENOENT"))
    );
    let eacces = failure(&not_exec);
    assert_eq!(
        (eacces["errno"].as_i64(), eacces["error"].as_str()),
        (Some(13), Some("EACCES"))
    );
}

#[test]
fn process_started_before_the_agent_is_in_the_snapshot_and_its_child_links_to_it() {
    let mut early = Command::new("sh")
        .args(["-c", "read go; /bin/echo child-of-early-process"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let early_pid = early.id();
    let agent = Agent::start(&[]);
    early.stdin.take().unwrap().write_all(b"go\n").unwrap();
    early.wait().unwrap();
    let run = agent.stop();

    let snap = run
        .of_kind("snapshot")
        .find(|e| e["tgid"] == early_pid)
        .unwrap_or_else(|| panic!("process {early_pid} missing from the startup snapshot"));
    assert_eq!(snap["origin"], "snapshot");
    let child = exec_with_argv(&run, &["/bin/echo", "child-of-early-process"]);
    assert_eq!(
        child["parent_exec_id"], snap["exec_id"],
        "the child links to the snapshotted parent"
    );
}

#[test]
fn huge_argv_is_truncated_and_flagged_and_the_agent_keeps_running() {
    // 200 KiB of arguments (the kernel caps one string at 128 KiB, so four of 50 KiB).
    let big = "x".repeat(50 * 1024);
    let many: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let agent = Agent::start(&[]);
    run_to_end(Command::new("/bin/true").args([&big, &big, &big, &big]));
    run_to_end(Command::new("/bin/true").args(&many));
    run_to_end(
        Command::new("/bin/echo")
            .arg("still-capturing")
            .stdout(Stdio::null()),
    );
    let run = agent.stop();

    let huge = run
        .of_kind("exec")
        .find(|e| {
            e["filename"] == "/bin/true"
                && Run::argv(e).get(1).is_some_and(|a| a.starts_with("xxxx"))
        })
        .expect("exec with the 200 KiB argv");
    assert_eq!(huge["args_truncated"], true);
    // NUL-separated; the cut-off last string has no NUL of its own.
    let argv = Run::argv(huge);
    let captured: usize = argv.iter().map(String::len).sum::<usize>() + argv.len() - 1;
    assert_eq!(
        captured, 4096,
        "argv is captured up to exactly the 4096-byte cap"
    );

    // argv comes from the new image's memory: every entry up to the byte cap, no entry cap.
    let long_list = run
        .of_kind("exec")
        .find(|e| e["filename"] == "/bin/true" && Run::argv(e).get(1).is_some_and(|a| a == "0"))
        .expect("exec with 300 arguments");
    assert_eq!(long_list["args_truncated"], false);
    assert_eq!(
        Run::argv(long_list).len(),
        301,
        "all 300 arguments and argv[0]"
    );
    assert_eq!(Run::argv(long_list)[300], "299");

    exec_with_argv(&run, &["/bin/echo", "still-capturing"]);
}
