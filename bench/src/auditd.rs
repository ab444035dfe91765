//! auditd as the peer: Debian's `auditd`, started by the harness with its own configuration
//! directory (`auditd -n -c DIR`), recording the same syscalls as Lineage captures
//! (execve/execveat, openat, connect), then torn down (`auditctl -D`, SIGTERM, the kernel's
//! audit-enabled flag restored).
//!
//! The configuration is Debian's default with two changes so the count is complete: the log
//! never rotates (`max_log_file_action = IGNORE`, Debian's 5 × 8 MB rotation discards most
//! records of an openat storm) and a private, empty plugin directory. The kernel backlog is
//! set to 8192 as Debian's `audit.rules` does. Records the kernel drops anyway are read from
//! the `lost` counter of `auditctl -s` and reported.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub enabled: u64,
    pub pid: u64,
    pub lost: u64,
    pub backlog: u64,
}

pub fn status() -> anyhow::Result<Status> {
    let out = Command::new("auditctl")
        .arg("-s")
        .output()
        .context("running auditctl -s")?;
    if !out.status.success() {
        bail!(
            "auditctl -s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_status(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "enabled" => s.enabled = v,
            "pid" => s.pid = v,
            "lost" => s.lost = v,
            "backlog" => s.backlog = v,
            _ => {}
        }
    }
    s
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("auditctl").args(args).output()?;
    if !out.status.success() {
        bail!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why auditd cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    for bin in ["auditd", "auditctl"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{bin} not installed (Debian: apt-get install -y auditd)"
            ));
        }
    }
    match status() {
        Ok(s) if s.pid != 0 => Some(format!(
            "an audit daemon (pid {}) is already running; not touching it",
            s.pid
        )),
        Ok(_) => None,
        Err(e) => Some(format!("auditctl -s failed: {e}")),
    }
}

/// What an interrupted suite must undo: the kernel's audit flag before auditd started, and
/// whether rules may be installed. Read by [`emergency_teardown`].
static ACTIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ENABLED_BEFORE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called when the suite is interrupted: delete the rules and restore the audit flag, so a
/// killed benchmark does not leave every syscall on the host audited.
pub fn emergency_teardown() {
    use std::sync::atomic::Ordering;
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = auditctl(&["-D"]);
        let _ = auditctl(&["-e", &ENABLED_BEFORE.load(Ordering::SeqCst).to_string()]);
    }
}

pub struct Auditd {
    child: Option<Child>,
    dir: PathBuf,
    enabled_before: u64,
    lost_before: u64,
    torn_down: bool,
}

/// What auditd recorded for one generator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditCount {
    /// SYSCALL records of the storm's syscall by the generator (exec: by its children).
    pub records: u64,
    /// Kernel `lost` counter increase during the run.
    pub kernel_lost: u64,
    pub log_bytes: u64,
}

const CONF: &str = "local_events = yes
write_logs = yes
log_file = @LOG_FILE@
log_group = root
log_format = ENRICHED
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 16384
num_logs = 2
priority_boost = 4
name_format = NONE
max_log_file_action = IGNORE
space_left = 75
space_left_action = IGNORE
admin_space_left = 50
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = SYSLOG
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = SYSLOG
max_restarts = 10
plugin_dir = @PLUGIN_DIR@
end_of_event_timeout = 2
";

impl Auditd {
    /// Starts auditd in `dir` and installs the rules.
    pub fn start(dir: &Path) -> anyhow::Result<Auditd> {
        std::fs::create_dir_all(dir.join("plugins.d"))?;
        let conf = CONF
            .replace("@LOG_FILE@", &dir.join("audit.log").display().to_string())
            .replace("@PLUGIN_DIR@", &dir.join("plugins.d").display().to_string());
        std::fs::write(dir.join("auditd.conf"), conf)?;
        let before = status()?;
        let child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("auditd.stderr"))?)
            .spawn()
            .context("starting auditd")?;
        let pid = child.id() as u64;
        crate::children::register(child.id());
        ENABLED_BEFORE.store(before.enabled, std::sync::atomic::Ordering::SeqCst);
        ACTIVE.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut a = Auditd {
            child: Some(child),
            dir: dir.into(),
            enabled_before: before.enabled,
            lost_before: before.lost,
            torn_down: false,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while status()?.pid != pid {
            if let Some(c) = a.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    bail!(
                        "auditd exited with {st}: {}",
                        std::fs::read_to_string(dir.join("auditd.stderr")).unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("auditd did not register with the kernel within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        auditctl(&["-b", "8192"])?;
        auditctl(&[
            "-a",
            "exit,always",
            "-F",
            "arch=b64",
            "-S",
            "execve",
            "-S",
            "execveat",
            "-S",
            "openat",
            "-S",
            "connect",
        ])?;
        a.lost_before = status()?.lost;
        Ok(a)
    }

    /// Waits for the kernel backlog to drain, tears auditd down and counts `pid`'s records.
    pub fn finish(mut self, storm: crate::gen::Storm, pid: u32) -> anyhow::Result<AuditCount> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while status()?.backlog > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let lost = status()?.lost.saturating_sub(self.lost_before);
        self.teardown()?;
        let log = self.dir.join("audit.log");
        let log_bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let records = count_records(&log, storm, pid)?;
        let _ = std::fs::remove_file(&log);
        Ok(AuditCount {
            records,
            kernel_lost: lost,
            log_bytes,
        })
    }

    fn teardown(&mut self) -> anyhow::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let rules = auditctl(&["-D"]);
        if let Some(mut c) = self.child.take() {
            crate::children::unregister(c.id());
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let enabled = auditctl(&["-e", &self.enabled_before.to_string()]);
        ACTIVE.store(false, std::sync::atomic::Ordering::SeqCst);
        rules.and(enabled)
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("auditd teardown: {e}");
        }
    }
}

/// SYSCALL records of the storm's syscall whose `pid` (exec: `ppid`) is the generator.
pub fn count_records(log: &Path, storm: crate::gen::Storm, pid: u32) -> anyhow::Result<u64> {
    let f = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let who = match storm {
        crate::gen::Storm::Exec => format!(" ppid={pid} "),
        _ => format!(" pid={pid} "),
    };
    let calls: Vec<String> = storm
        .audit_syscall_numbers()
        .iter()
        .map(|n| format!(" syscall={n} "))
        .collect();
    let mut n = 0;
    for line in BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let line = line?;
        if !line.starts_with(b"type=SYSCALL ") {
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        if line.contains(&who) && calls.iter().any(|c| line.contains(c.as_str())) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::Storm;

    #[test]
    fn parses_auditctl_status() {
        let s = parse_status("enabled 1\nfailure 1\npid 4242\nrate_limit 0\nbacklog_limit 8192\nlost 17\nbacklog 3\n");
        assert_eq!((s.enabled, s.pid, s.lost, s.backlog), (1, 4242, 17, 3));
    }

    #[test]
    fn counts_only_the_generators_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(
            &log,
            "type=SYSCALL msg=audit(1.1:1): arch=c000003e syscall=257 success=yes exit=3 items=1 ppid=1 pid=77 auid=0 comm=\"x\"\x1dARCH=x86_64\n\
             type=PATH msg=audit(1.1:1): item=0 name=\"/tmp/f\"\n\
             type=SYSCALL msg=audit(1.1:2): arch=c000003e syscall=257 success=yes exit=3 items=1 ppid=77 pid=78 auid=0\n\
             type=SYSCALL msg=audit(1.1:3): arch=c000003e syscall=59 success=yes exit=0 items=2 ppid=77 pid=79 auid=0\n\
             type=SYSCALL msg=audit(1.1:4): arch=c000003e syscall=42 success=yes exit=0 items=0 ppid=1 pid=77 auid=0\n",
        )
        .unwrap();
        assert_eq!(count_records(&log, Storm::Openat, 77).unwrap(), 1);
        assert_eq!(count_records(&log, Storm::Exec, 77).unwrap(), 1);
        assert_eq!(count_records(&log, Storm::Connect, 77).unwrap(), 1);
    }
}
