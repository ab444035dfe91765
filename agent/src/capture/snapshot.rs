//! The startup snapshot: processes that were running before the probes were attached.
//!
//! Read from `/proc` after attaching, so a process created in between is seen twice (snapshot
//! and fork record) rather than not at all; the process table deduplicates by identity.

use std::{fs, path::Path};

use crate::capture::lineage::ProcEntry;

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... starttime(22) ...`. The comm may hold
/// spaces and parentheses, so split at the last `)`.
pub fn parse_stat(stat: &str) -> Option<(u32, String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let pid = stat[..open].trim().parse().ok()?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let ppid = rest.get(1)?.parse().ok()?;
    let start_ticks = rest.get(19)?.parse().ok()?;
    Some((pid, comm, ppid, start_ticks))
}

fn read_one(dir: &Path) -> Option<ProcEntry> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let (tgid, comm, ppid, start_ticks) = parse_stat(&stat)?;
    let argv = fs::read(dir.join("cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let binary = fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(ProcEntry {
        tgid,
        ppid,
        start_ticks,
        comm,
        binary,
        argv,
    })
}

/// Every process under `proc_root` (normally `/proc`); ones that vanish mid-read are skipped.
pub fn read_processes(proc_root: &Path) -> std::io::Result<Vec<ProcEntry>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let entry = entry?;
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if is_pid {
            out.extend(read_one(&entry.path()));
        }
    }
    // Parents first keeps the listing stable and readable.
    out.sort_by_key(|e| e.tgid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let (pid, comm, ppid, start) = parse_stat(stat).unwrap();
        assert_eq!(
            (pid, comm.as_str(), ppid, start),
            (1234, "a) b (c)", 1, 98765)
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let all = read_processes(Path::new("/proc")).unwrap();
        let mine = all
            .iter()
            .find(|e| e.tgid == me)
            .expect("own process listed");
        assert_eq!(mine.ppid, std::os::unix::process::parent_id());
        assert!(mine.start_ticks > 0);
    }
}
