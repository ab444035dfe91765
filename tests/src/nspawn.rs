//! A throwaway Debian machine with systemd as PID 1, for testing the shipped units the way an
//! SRE runs them (issue 17): systemd is not PID 1 on the test hosts, so the units are booted in
//! a `systemd-nspawn` container instead.
//!
//! The bookworm tree is built once with `mmdebstrap` and cached outside the repository (it is
//! ~200 MiB and takes about a minute to build); every boot runs it with `--volatile=overlay`,
//! so what a test installs lands in a tmpfs and the cached tree is never modified. The
//! container gets its own network namespace (loopback only), so its agent's metrics port
//! cannot collide with anything on the host.

use std::{
    fs,
    io::Write as _,
    os::unix::{fs::PermissionsExt as _, io::AsRawFd as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime},
};

/// Where the tree is cached between runs.
const CACHE_DIR: &str = "/var/cache/lineage-tests";
/// The command that builds the tree; a tree built by a different recipe is rebuilt.
const RECIPE: &[&str] = &[
    "mmdebstrap",
    "--variant=minbase",
    "--include=systemd,systemd-sysv,dbus",
    "bookworm",
];
/// A tree older than this is rebuilt, so it picks up the distribution's updates.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
const STAMP: &str = ".lineage-test-tree";

/// The cached bookworm tree, built (or rebuilt when stale) under an exclusive lock so
/// concurrent test runs share one build.
pub fn bookworm_tree() -> PathBuf {
    let cache = Path::new(CACHE_DIR);
    fs::create_dir_all(cache).expect("creating the test tree cache directory");
    let tree = cache.join("bookworm-systemd");
    let lock = fs::File::create(cache.join("bookworm-systemd.lock")).expect("tree lock file");
    // SAFETY: a valid fd; the lock is released when `lock` is closed at the end of scope.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "locking the test tree cache");
    let recipe = RECIPE.join(" ");
    let stamp = tree.join(STAMP);
    let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == recipe)
        && fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < MAX_AGE);
    if fresh {
        return tree;
    }
    let building = cache.join("bookworm-systemd.new");
    let _ = fs::remove_dir_all(&building);
    let started = Instant::now();
    eprintln!(
        "building the systemd test tree: {recipe} {}",
        building.display()
    );
    let out = Command::new(RECIPE[0])
        .args(&RECIPE[1..])
        .arg(&building)
        .output()
        .unwrap_or_else(|e| {
            panic!("running mmdebstrap ({e}): `cargo xtask setup` installs it (apt: mmdebstrap)")
        });
    assert!(
        out.status.success(),
        "mmdebstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(building.join(STAMP), format!("{recipe}\n")).expect("writing the tree stamp");
    let _ = fs::remove_dir_all(&tree);
    fs::rename(&building, &tree).expect("moving the new tree into place");
    eprintln!("built the test tree in {:.0?}", started.elapsed());
    tree
}

/// A booted container. Dropping it shuts the container down.
pub struct Machine {
    nspawn: Child,
    /// The container's PID 1 (systemd), as seen from the host.
    leader: u32,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

static BOOTS: AtomicU32 = AtomicU32::new(0);

fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl Machine {
    /// Boots the cached tree with systemd as PID 1. `syscalls` is nspawn's
    /// `--system-call-filter` (system calls allowed beyond nspawn's default list).
    pub fn boot(syscalls: &str) -> Machine {
        crate::require_root();
        let tree = bookworm_tree();
        let scratch = tempfile::tempdir().expect("scratch dir");
        let log = scratch.path().join("console.log");
        let name = format!(
            "lineage-test-{}-{}",
            std::process::id(),
            BOOTS.fetch_add(1, Ordering::Relaxed)
        );
        let console = fs::File::create(&log).expect("console log");
        let started = Instant::now();
        let nspawn = Command::new("systemd-nspawn")
            .arg("--boot")
            .arg("--directory")
            .arg(&tree)
            .arg(format!("--machine={name}"))
            .args([
                "--volatile=overlay",
                "--private-network",
                "--register=no",
                "--keep-unit",
                "--capability=all",
            ])
            .arg(format!("--system-call-filter={syscalls}"))
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console fd"))
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("running systemd-nspawn ({e}): `cargo xtask setup` installs it (apt: systemd-container)")
            });
        let mut machine = Machine {
            leader: 0,
            nspawn,
            log,
            _scratch: scratch,
        };
        // nspawn forks the container's init; wait until that child is systemd.
        while machine.leader == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the container's systemd did not start; console:\n{}",
                machine.console()
            );
            if let Ok(Some(status)) = machine.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited with {status}; console:\n{}",
                    machine.console()
                );
            }
            if let Some(&pid) = children(machine.nspawn.id())
                .iter()
                .find(|&&p| comm(p) == "systemd")
            {
                machine.leader = pid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until its private bus is up, systemctl answers nothing; then "starting" until boot
        // is done.
        let mut state = String::new();
        while state != "running" && state != "degraded" {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the container did not finish booting ({state:?}); console:\n{}",
                machine.console()
            );
            std::thread::sleep(Duration::from_millis(100));
            let out = machine.sh("systemctl is-system-running");
            state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        eprintln!(
            "container {name} booted ({state}) in {:.1?}",
            started.elapsed()
        );
        machine
    }

    fn console(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The container's root directory as seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// Runs a shell script inside the container (all its namespaces, as its root).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "sh", "-c", script])
            .output()
            .expect("running nsenter")
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the container, `{script}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A unit's property (`systemctl show -p NAME --value`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The unit's main process, as a pid in the container.
    pub fn main_pid(&self, unit: &str) -> u32 {
        self.property(unit, "MainPID")
            .parse()
            .expect("MainPID is a number")
    }

    /// Everything the unit logged in this boot.
    pub fn journal(&self, unit: &str) -> String {
        self.ok(&format!("journalctl -b --no-pager -o cat -u {unit}"))
    }

    /// Copies a host file into the container (into its writable overlay).
    pub fn copy_in(&self, from: &Path, to: &str) {
        let dest = self.root().join(to.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("a parent")).expect("creating the target dir");
        fs::copy(from, &dest)
            .unwrap_or_else(|e| panic!("copying {} into the container: {e}", from.display()));
    }

    /// Writes a file inside the container.
    pub fn write(&self, to: &str, text: &str, mode: u32) {
        let dest = self.root().join(to.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("a parent")).expect("creating the target dir");
        let mut f = fs::File::create(&dest).expect("creating the file");
        f.write_all(text.as_bytes()).expect("writing the file");
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Polls `check` until it returns true or `timeout` passes.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM makes nspawn ask the container's systemd to power off.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The release tarball `cargo xtask package` builds (set by `cargo xtask test`).
pub fn release_tarball() -> PathBuf {
    let path = std::env::var_os("LINEAGE_PACKAGE")
        .map(PathBuf::from)
        .expect("LINEAGE_PACKAGE is not set: run the kernel tests with `cargo xtask test` (or `cargo xtask package` and point LINEAGE_PACKAGE at the tarball)");
    assert!(
        path.exists(),
        "release tarball {} not found",
        path.display()
    );
    path
}

/// The install steps of docs/OPERATIONS.md ("Steps (as root)"), verbatim.
pub fn documented_install_steps() -> String {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"))
            .expect("reading docs/OPERATIONS.md");
    let section = doc
        .split_once("### Steps (as root)")
        .expect("docs/OPERATIONS.md has a \"### Steps (as root)\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the steps are a ```sh block")
        .1;
    block
        .split_once("```")
        .expect("the sh block ends")
        .0
        .to_owned()
}
