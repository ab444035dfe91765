//! Why a system call the agent needs was refused, in words an operator can act on.
//!
//! The kernel answers EPERM for three different problems: a missing capability, a seccomp
//! filter (systemd's `SystemCallFilter=`, a container runtime's profile) and a security
//! module. Only the first is fixed by granting a capability, so every start-up error that
//! carries an errno goes through [`explain`], which says which of the three applies here:
//! it reads the agent's own capabilities and seccomp state from `/proc/self/status`.

use std::{io, os::unix::fs::MetadataExt as _, path::Path};

/// Capabilities the agent's start-up can need (numbers from linux/capability.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    DacReadSearch = 2,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The agent's own privileges and confinement, as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    pub uid: u32,
    pub cap_eff: u64,
    /// Seccomp filters stacked on this process (0: none).
    pub seccomp_filters: u32,
}

impl Privileges {
    pub fn current() -> Privileges {
        Privileges::parse(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
    }

    /// Parses `/proc/<pid>/status`.
    pub fn parse(status: &str) -> Privileges {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let seccomp_mode: u32 = field("Seccomp").and_then(|v| v.parse().ok()).unwrap_or(0);
        Privileges {
            uid: field("Uid")
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(u32::MAX),
            cap_eff: field("CapEff")
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(0),
            // Seccomp_filters appeared in 5.9; before it, mode 2 still means "filtered".
            seccomp_filters: field("Seccomp_filters")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::from(seccomp_mode == 2)),
        }
    }

    pub fn has(&self, cap: Cap) -> bool {
        self.cap_eff & (1 << cap as u32) != 0
    }

    /// The first of `caps` that is not held; CAP_SYS_ADMIN stands in for CAP_BPF and
    /// CAP_PERFMON (kernels before 5.8 know only it).
    fn missing(&self, caps: &[Cap]) -> Vec<Cap> {
        caps.iter()
            .copied()
            .filter(|&c| {
                !(self.has(c) || matches!(c, Cap::Bpf | Cap::Perfmon) && self.has(Cap::SysAdmin))
            })
            .collect()
    }
}

/// The symbolic name of an errno, for messages (`EPERM`, not "os error 1").
pub fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EDQUOT => "EDQUOT",
        _ => "errno",
    }
}

/// "EPERM (Operation not permitted)": the errno by name and the kernel's words.
pub fn describe(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("{} ({text})", errno_name(code))
        }
        None => err.to_string(),
    }
}

/// Why `syscall` failed with `err`, given the capabilities it needs: a missing capability, a
/// seccomp filter, a security module, or a missing kernel feature.
pub fn explain(syscall: &str, err: &io::Error, needs: &[Cap]) -> String {
    explain_for(&Privileges::current(), syscall, err, needs)
}

pub fn explain_for(p: &Privileges, syscall: &str, err: &io::Error, needs: &[Cap]) -> String {
    let what = format!("{syscall}() failed with {}", describe(err));
    let held = || {
        needs
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(" and ")
    };
    match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            let missing = p.missing(needs);
            if !missing.is_empty() {
                let names: Vec<_> = missing.iter().map(|c| c.name()).collect();
                format!(
                    "{what}: the agent (uid {}) lacks {}; grant it (systemd: AmbientCapabilities=, \
                     Kubernetes: securityContext.capabilities.add)",
                    p.uid,
                    names.join(" and ")
                )
            } else if p.seccomp_filters > 0 {
                let held = if needs.is_empty() {
                    String::new()
                } else {
                    format!("the agent holds {}, so no privilege is missing; ", held())
                };
                format!(
                    "{what}: {held}it runs under {} seccomp filter(s) and one of them refuses \
                     {syscall}(): allow {syscall} in the seccomp profile (systemd: \
                     SystemCallFilter=, containers: the runtime's seccomp profile, \
                     systemd-nspawn: --system-call-filter)",
                    p.seccomp_filters
                )
            } else {
                format!(
                    "{what} although the agent holds {} and runs under no seccomp filter: a Linux \
                     security module (lockdown, SELinux, AppArmor) refused it",
                    if needs.is_empty() {
                        "what it needs".to_owned()
                    } else {
                        held()
                    }
                )
            }
        }
        Some(libc::ENOSYS) => format!(
            "{what}: this kernel does not provide {syscall}(), or a seccomp filter answers ENOSYS \
             for it ({} filter(s) active)",
            p.seccomp_filters
        ),
        _ => what,
    }
}

/// What is wrong with a file or directory the agent could not use, with the facts that tell
/// an operator how to fix it: who owns it against who the agent runs as, a read-only mount,
/// a full disk.
pub fn file_problem(path: &Path, err: &io::Error) -> String {
    let what = describe(err);
    match err.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            // The nearest existing ancestor is the one refusing.
            let owner = path
                .ancestors()
                .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)))
                .map(|(p, m)| {
                    format!(
                        "; {} is owned by uid {} gid {} with mode {:04o}",
                        p.display(),
                        m.uid(),
                        m.gid(),
                        m.mode() & 0o7777
                    )
                })
                .unwrap_or_default();
            format!(
                "{what}{owner}, and the agent runs as uid {}",
                Privileges::current().uid
            )
        }
        Some(libc::EROFS) => format!(
            "{what}: the file system is read-only for the agent (systemd's ProtectSystem=strict \
             leaves only StateDirectory=/RuntimeDirectory=/ReadWritePaths= writable; in a \
             container, mount a writable volume there)"
        ),
        Some(libc::ENOENT) => format!("{what}: it does not exist"),
        Some(libc::ENOSPC | libc::EDQUOT) => format!("{what}: the disk is full"),
        _ => what,
    }
}

/// The system call behind an aya error, from the error's chain of sources: (call, errno).
fn syscall_of<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<(&'static str, &'a io::Error)> {
    use aya::{maps::MapError, programs::ProgramError, sys::SyscallError};
    let mut cur = Some(err);
    while let Some(e) = cur {
        // aya's `#[error(transparent)]` variants hide the SyscallError from `source()`.
        let syscall = e
            .downcast_ref::<SyscallError>()
            .or(match e.downcast_ref::<ProgramError>() {
                Some(ProgramError::SyscallError(s)) => Some(s),
                _ => None,
            })
            .or(match e.downcast_ref::<MapError>() {
                Some(MapError::SyscallError(s)) => Some(s),
                _ => None,
            });
        if let Some(s) = syscall {
            // aya names its wrappers (`perf_event_open_trace_point`, `bpf_link_create`).
            let call = if s.call.starts_with("perf_event_open") {
                "perf_event_open"
            } else if s.call.starts_with("bpf") {
                "bpf"
            } else {
                s.call
            };
            return Some((call, &s.io_error));
        }
        if let Some(ProgramError::LoadError { io_error, .. }) = e.downcast_ref() {
            return Some(("bpf", io_error));
        }
        if let Some(MapError::CreateError { io_error, .. }) = e.downcast_ref() {
            return Some(("bpf", io_error));
        }
        cur = e.source();
    }
    None
}

/// The explanation for an aya load or attach error, when a refused system call is behind it.
pub fn explain_aya(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let (call, io_error) = syscall_of(err)?;
    let needs: &[Cap] = match call {
        "perf_event_open" => &[Cap::Perfmon],
        _ => &[Cap::Bpf],
    };
    matches!(
        io_error.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS)
    )
    .then(|| explain(call, io_error, needs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tlineage-agent\nUid:\t997\t997\t997\t997\n\
        CapEff:\t000000c000080004\nSeccomp:\t2\nSeccomp_filters:\t3\n";

    #[test]
    fn reads_uid_caps_and_seccomp() {
        let p = Privileges::parse(STATUS);
        assert_eq!(p.uid, 997);
        assert!(p.has(Cap::Bpf) && p.has(Cap::Perfmon) && p.has(Cap::DacReadSearch));
        assert!(!p.has(Cap::SysAdmin));
        assert_eq!(p.seccomp_filters, 3);
    }

    #[test]
    fn eperm_with_the_capability_under_seccomp_blames_the_filter() {
        let p = Privileges::parse(STATUS);
        let text = explain_for(
            &p,
            "bpf",
            &io::Error::from_raw_os_error(libc::EPERM),
            &[Cap::Bpf],
        );
        assert!(
            text.starts_with("bpf() failed with EPERM (Operation not permitted)"),
            "{text}"
        );
        assert!(text.contains("holds CAP_BPF"), "{text}");
        assert!(text.contains("3 seccomp filter(s)"), "{text}");
        assert!(text.contains("allow bpf"), "{text}");
    }

    #[test]
    fn eperm_without_the_capability_names_it() {
        let p = Privileges {
            uid: 1000,
            cap_eff: 0,
            seccomp_filters: 1,
        };
        let err = io::Error::from_raw_os_error(libc::EPERM);
        let text = explain_for(&p, "perf_event_open", &err, &[Cap::Perfmon]);
        assert!(text.contains("uid 1000) lacks CAP_PERFMON"), "{text}");
        assert!(!text.contains("seccomp"), "{text}");
    }

    #[test]
    fn eperm_with_capability_and_no_filter_blames_a_security_module() {
        let p = Privileges {
            uid: 0,
            cap_eff: 1 << Cap::SysAdmin as u32,
            seccomp_filters: 0,
        };
        let err = io::Error::from_raw_os_error(libc::EPERM);
        let text = explain_for(&p, "bpf", &err, &[Cap::Bpf]);
        assert!(text.contains("security module"), "{text}");
    }

    #[test]
    fn finds_the_system_call_behind_a_transparent_aya_error() {
        let e = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "perf_event_open_trace_point",
            io_error: io::Error::from_raw_os_error(libc::EPERM),
        });
        let text = explain_aya(&e).expect("an explanation");
        assert!(
            text.starts_with("perf_event_open() failed with EPERM"),
            "{text}"
        );
    }

    #[test]
    fn other_errors_are_named_without_guessing() {
        let p = Privileges::default();
        let err = io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            explain_for(&p, "write", &err, &[]),
            "write() failed with ENOSPC (No space left on device)"
        );
    }
}
