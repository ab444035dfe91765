//! What every process exports about itself (the `process_*` names client libraries use, so
//! existing dashboards work) and the space left on the filesystem that holds its data.

use std::path::Path;

use crate::exposition::Page;

/// CPU, memory, file descriptors and start time of this process, from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

fn sysconf(name: libc::c_int) -> u64 {
    // SAFETY: sysconf has no memory arguments.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).unwrap_or(0)
}

/// Boot time in seconds since the epoch (`btime` in /proc/stat).
fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

impl Process {
    /// Reads `/proc/self`; `None` when procfs is not there.
    pub fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name is in parentheses and may contain spaces: split after it.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // Field numbers in proc(5) minus 3 (pid, comm and state come before `rest`'s index 1).
        let field = |n: usize| f.get(n - 3).and_then(|s| s.parse::<u64>().ok());
        let ticks = sysconf(libc::_SC_CLK_TCK).max(1) as f64;
        let page = sysconf(libc::_SC_PAGESIZE);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid pointer.
        let max_fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            limit.rlim_cur
        } else {
            0
        };
        Some(Process {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
            start_time_seconds: boot_time().unwrap_or(0) as f64 + field(22)? as f64 / ticks,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            max_fds,
        })
    }

    /// Adds the standard `process_*` families.
    pub fn render(&self, page: &mut Page) {
        page.counter_f64(
            "process_cpu_seconds_total",
            "User and system CPU time spent, in seconds.",
            self.cpu_seconds,
        );
        page.gauge1(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        page.gauge1(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        page.gauge1(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            self.start_time_seconds,
        );
        page.gauge1(
            "process_open_fds",
            "Open file descriptors.",
            self.open_fds as f64,
        );
        page.gauge1(
            "process_max_fds",
            "Limit on open file descriptors.",
            self.max_fds as f64,
        );
    }
}

/// Size and free space of the filesystem holding a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsSpace {
    pub size_bytes: u64,
    /// Free for an unprivileged writer (what a full disk is measured by).
    pub avail_bytes: u64,
}

impl FsSpace {
    pub fn of(path: &Path) -> Option<FsSpace> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: all-zero is a valid statvfs; statvfs fills it from a valid C string.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return None;
        }
        let frsize = s.f_frsize as u64;
        Some(FsSpace {
            size_bytes: s.f_blocks as u64 * frsize,
            avail_bytes: s.f_bavail as u64 * frsize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = Process::read().expect("procfs");
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds > 0);
        assert!(p.start_time_seconds > 1.0e9, "{p:?}");
        let mut page = Page::default();
        p.render(&mut page);
        assert!(page.finish().contains("process_resident_memory_bytes "));
    }

    #[test]
    fn reads_filesystem_space() {
        let s = FsSpace::of(Path::new("/")).expect("statvfs /");
        assert!(s.size_bytes > 0 && s.avail_bytes <= s.size_bytes);
        assert_eq!(FsSpace::of(Path::new("/nonexistent/x")), None);
    }
}
