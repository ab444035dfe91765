//! Workload generators. Each runs in its own process (`lineage-bench gen ...`, started by the
//! harness) so that its pid identifies its events on the chain and in the audit log, and its
//! CPU time is its own. Every generator counts the operations it completed: that count is the
//! ground truth every capture figure is checked against.
//!
//! - `openat`: `openat(AT_FDCWD, file, O_RDONLY)` + `close` on one existing temp file.
//! - `exec`: `posix_spawn("/bin/true")` + `waitpid`, one child at a time.
//! - `connect`: a loopback TCP listener opened by the generator, then per operation
//!   `socket` + `connect` + `accept4` + `close` ×2. The client socket has `SO_LINGER {1, 0}`
//!   so its close sends RST and no TIME_WAIT accumulates (otherwise a few runs exhaust the
//!   ephemeral port range).
//!
//! Rate limiting is a token bucket refilled continuously at `rate` per second (see [`Pacer`]);
//! without a rate the loop runs flat out.

use std::{
    ffi::CString,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Storm {
    Openat,
    Exec,
    Connect,
}

impl Storm {
    pub const ALL: [Storm; 3] = [Storm::Openat, Storm::Exec, Storm::Connect];

    pub fn name(self) -> &'static str {
        match self {
            Storm::Openat => "openat",
            Storm::Exec => "exec",
            Storm::Connect => "connect",
        }
    }

    /// The syscalls auditd is told to record for a like-for-like comparison.
    pub fn audit_syscall_numbers(self) -> &'static [u32] {
        match self {
            Storm::Openat => &[257],
            Storm::Exec => &[59],
            Storm::Connect => &[42],
        }
    }
}

/// What a generator reports on stdout (one JSON line) when it is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenResult {
    pub storm: Option<Storm>,
    pub pid: u32,
    /// Operations completed (the ground truth).
    pub ops: u64,
    /// Operations that failed (counted separately, not in `ops`).
    pub errors: u64,
    /// From just before the first operation to just after the last.
    pub wall_ns: u64,
    /// CPU of the generator itself.
    pub user_ns: u64,
    pub sys_ns: u64,
    /// CPU of its reaped children (the exec storm's `/bin/true` processes).
    pub child_user_ns: u64,
    pub child_sys_ns: u64,
    /// Requested rate, if paced.
    pub rate: Option<f64>,
}

impl GenResult {
    pub fn achieved_rate(&self) -> f64 {
        if self.wall_ns == 0 {
            0.0
        } else {
            self.ops as f64 * 1e9 / self.wall_ns as f64
        }
    }

    /// All CPU the workload consumed (itself and its children).
    pub fn cpu_ns(&self) -> u64 {
        self.user_ns + self.sys_ns + self.child_user_ns + self.child_sys_ns
    }
}

/// Shortest sleep the pacer takes; smaller leads are allowed to accumulate.
const MIN_SLEEP: Duration = Duration::from_micros(200);

/// Token bucket: at most `rate` operations per second on average, with bursts of at most
/// `burst` operations after a stall (so a late wake-up is caught up, but never by more).
pub struct Pacer {
    start: Instant,
    rate: Option<f64>,
    burst: f64,
}

impl Pacer {
    pub fn new(rate: Option<f64>) -> Pacer {
        // About 2 ms worth of operations: enough to absorb a sleep's overshoot.
        let burst = rate.map(|r| (r * 0.002).max(1.0)).unwrap_or(0.0);
        Pacer {
            start: Instant::now(),
            rate,
            burst,
        }
    }

    /// How long to wait before operation number `done` (0-based) may start, `elapsed` after
    /// the start. Zero means go now.
    pub fn delay(&self, done: u64, elapsed: Duration) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let due = done as f64 / rate;
        let now = elapsed.as_secs_f64();
        if due <= now {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(due - now)
    }

    /// Blocks until operation `done` may start. Restarts the bucket's clock if we have fallen
    /// behind by more than a burst, so a stall is not followed by an unbounded burst.
    pub fn wait(&mut self, done: u64) {
        let Some(rate) = self.rate else { return };
        let elapsed = self.start.elapsed();
        let behind = elapsed.as_secs_f64() - done as f64 / rate;
        if behind * rate > self.burst {
            // Move the start so that we are exactly one burst behind.
            self.start += Duration::from_secs_f64(behind - self.burst / rate);
            return;
        }
        // Never spin (a spinning generator would take a core from the agent on a small
        // machine): run ahead by up to MIN_SLEEP, then sleep the whole lead away.
        let d = self.delay(done, elapsed);
        if d >= MIN_SLEEP {
            std::thread::sleep(d);
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    #[arg(long, value_enum)]
    pub storm: Storm,
    /// Operations to perform.
    #[arg(long)]
    pub count: u64,
    /// Operations per second (token bucket); unpaced without it.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The file the openat storm opens (must exist).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Executable the exec storm spawns.
    #[arg(long, default_value = "/bin/true")]
    pub exe: std::path::PathBuf,
}

fn rusage(who: i32) -> (u64, u64) {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}

/// Runs the storm in this process and returns its counts.
pub fn run(args: &GenArgs) -> anyhow::Result<GenResult> {
    // Short sleeps in the pacer should not be stretched by the default 50 µs timer slack.
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let (user0, sys0) = rusage(libc::RUSAGE_SELF);
    let (cuser0, csys0) = rusage(libc::RUSAGE_CHILDREN);
    let (ops, errors, wall) = match args.storm {
        Storm::Openat => {
            let file = args
                .file
                .as_ref()
                .context("--file is required for openat")?;
            openat_storm(file, args.count, args.rate)?
        }
        Storm::Exec => exec_storm(&args.exe, args.count, args.rate)?,
        Storm::Connect => connect_storm(args.count, args.rate)?,
    };
    let (user1, sys1) = rusage(libc::RUSAGE_SELF);
    let (cuser1, csys1) = rusage(libc::RUSAGE_CHILDREN);
    Ok(GenResult {
        storm: Some(args.storm),
        pid: std::process::id(),
        ops,
        errors,
        wall_ns: wall.as_nanos() as u64,
        user_ns: user1 - user0,
        sys_ns: sys1 - sys0,
        child_user_ns: cuser1 - cuser0,
        child_sys_ns: csys1 - csys0,
        rate: args.rate,
    })
}

fn cstring(p: &std::path::Path) -> anyhow::Result<CString> {
    use std::os::unix::ffi::OsStrExt as _;
    CString::new(p.as_os_str().as_bytes()).context("path with a NUL byte")
}

fn openat_storm(
    file: &std::path::Path,
    count: u64,
    rate: Option<f64>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let path = cstring(file)?;
    let mut pacer = Pacer::new(rate);
    let (mut ops, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..count {
        pacer.wait(i);
        // SAFETY: valid NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            errors += 1;
            continue;
        }
        unsafe { libc::close(fd) };
        ops += 1;
    }
    Ok((ops, errors, start.elapsed()))
}

/// Spawns `exe` with argv `[exe, extra...]` and an empty environment; returns its pid.
pub fn spawn(exe: &CString, extra: &[&CString]) -> std::io::Result<libc::pid_t> {
    let mut argv: Vec<*mut libc::c_char> = vec![exe.as_ptr() as *mut _];
    argv.extend(extra.iter().map(|a| a.as_ptr() as *mut _));
    argv.push(std::ptr::null_mut());
    let envp: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the call.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            exe.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(pid)
}

/// Waits for `pid`; true when it exited with status 0.
pub fn wait_ok(pid: libc::pid_t) -> bool {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

fn exec_storm(
    exe: &std::path::Path,
    count: u64,
    rate: Option<f64>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let exe = cstring(exe)?;
    let mut pacer = Pacer::new(rate);
    let (mut ops, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..count {
        pacer.wait(i);
        match spawn(&exe, &[]) {
            Ok(pid) if wait_ok(pid) => ops += 1,
            _ => errors += 1,
        }
    }
    Ok((ops, errors, start.elapsed()))
}

fn sockaddr(port: u16) -> libc::sockaddr_in {
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    a
}

fn connect_storm(count: u64, rate: Option<f64>) -> anyhow::Result<(u64, u64, Duration)> {
    use std::os::fd::AsRawFd as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("loopback listener")?;
    let port = listener.local_addr()?.port();
    let lfd = listener.as_raw_fd();
    // A deep backlog: std's default (128) is fine for one connection at a time, but be generous.
    // SAFETY: listen on a socket we own.
    unsafe { libc::listen(lfd, 4096) };
    let addr = sockaddr(port);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let mut pacer = Pacer::new(rate);
    let (mut ops, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..count {
        pacer.wait(i);
        // SAFETY: plain socket syscalls on fds this loop owns and closes.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                errors += 1;
                continue;
            }
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            let rc = libc::connect(
                s,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if rc != 0 {
                errors += 1;
                libc::close(s);
                continue;
            }
            let a = libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            libc::close(s);
            if a < 0 {
                errors += 1;
                continue;
            }
            libc::close(a);
        }
        ops += 1;
    }
    let wall = start.elapsed();
    if ops == 0 && errors > 0 {
        bail!("every connect failed");
    }
    Ok((ops, errors, wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_never_waits() {
        let p = Pacer::new(None);
        assert_eq!(p.delay(1_000_000, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn paced_delay_follows_the_rate() {
        let p = Pacer::new(Some(1000.0));
        // Operation 10 is due at 10 ms.
        assert_eq!(p.delay(10, Duration::from_millis(10)), Duration::ZERO);
        let d = p.delay(10, Duration::from_millis(4));
        assert!((d.as_secs_f64() - 0.006).abs() < 1e-9, "{d:?}");
        assert_eq!(p.delay(0, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn generators_count_their_operations() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let r = run(&GenArgs {
            storm: Storm::Openat,
            count: 100,
            rate: None,
            file: Some(file),
            exe: "/bin/true".into(),
        })
        .unwrap();
        assert_eq!((r.ops, r.errors), (100, 0));
        let r = run(&GenArgs {
            storm: Storm::Connect,
            count: 20,
            rate: None,
            file: None,
            exe: "/bin/true".into(),
        })
        .unwrap();
        assert_eq!((r.ops, r.errors), (20, 0));
        let r = run(&GenArgs {
            storm: Storm::Exec,
            count: 3,
            rate: Some(1000.0),
            file: None,
            exe: "/bin/true".into(),
        })
        .unwrap();
        assert_eq!((r.ops, r.errors), (3, 0));
    }
}
