//! Which log a directory argument names.
//!
//! Every log command takes one host's log: an agent data directory or a collector's host
//! directory (`<store>/<host id hex>/`, both holding `segments/`), or the `segments` directory
//! itself. A collector store root holds several hosts; reading it as one log would find no
//! segment and report an empty (or truncated) log, which is wrong and confusing. So a store
//! root is refused with the list of its hosts, and the user names one: hosts have different
//! keys, and a verdict per host is what an investigator needs anyway.

use std::fmt;
use std::path::{Path, PathBuf};

use lineage_evidence::store::parse_file_name;

/// One host directory found under a collector store root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDir {
    pub path: PathBuf,
    pub segments: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    #[error("{}", collector_root_message(.root, .hosts))]
    CollectorRoot { root: PathBuf, hosts: Vec<HostDir> },
}

fn collector_root_message(root: &Path, hosts: &[HostDir]) -> String {
    let mut s = format!(
        "{} is a collector store holding {} host(s), not one log; name a host directory:",
        root.display(),
        hosts.len()
    );
    for h in hosts {
        s.push_str(&format!(
            "\n  {}  ({} segment file(s))",
            h.path.display(),
            h.segments
        ));
    }
    s
}

impl fmt::Display for HostDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// A 32-hex-digit directory name: a collector's host directory.
fn is_host_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn count_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().and_then(parse_file_name).is_some())
                .count()
        })
        .unwrap_or(0)
}

/// The host directories of a collector store root, sorted; empty when `dir` is not one.
pub fn collector_hosts(dir: &Path) -> Vec<HostDir> {
    if dir.join("segments").is_dir() {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut hosts: Vec<HostDir> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_host_id))
        .map(|e| e.path())
        .filter(|p| p.join("segments").is_dir())
        .map(|path| HostDir {
            segments: count_segments(&path.join("segments")),
            path,
        })
        .collect();
    hosts.sort_by(|a, b| a.path.cmp(&b.path));
    hosts
}

/// Refuses a collector store root (see the module docs); anything else is left to the reader.
pub fn require_single_log(dir: &Path) -> Result<(), LogDirError> {
    let hosts = collector_hosts(dir);
    if hosts.is_empty() {
        Ok(())
    } else {
        Err(LogDirError::CollectorRoot {
            root: dir.into(),
            hosts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_root_lists_its_hosts_and_a_host_dir_is_a_log() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("0123456789abcdef0123456789abcdef");
        let b = tmp.path().join("fedcba9876543210fedcba9876543210");
        for h in [&a, &b] {
            std::fs::create_dir_all(h.join("segments")).unwrap();
        }
        std::fs::write(a.join("segments/00000000000000000000.seg"), b"x").unwrap();
        std::fs::create_dir_all(tmp.path().join("not-a-host/segments")).unwrap();
        std::fs::write(tmp.path().join("witness.pub"), b"k").unwrap();

        let err = require_single_log(tmp.path()).unwrap_err();
        let LogDirError::CollectorRoot { hosts, .. } = &err;
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].path, a);
        assert_eq!(hosts[0].segments, 1);
        assert_eq!(hosts[1].segments, 0);
        let msg = err.to_string();
        assert!(msg.contains("collector store holding 2 host(s)"), "{msg}");
        assert!(msg.contains(&a.display().to_string()), "{msg}");

        require_single_log(&a).unwrap();
        require_single_log(&a.join("segments")).unwrap();
        require_single_log(&tmp.path().join("missing")).unwrap();
    }
}
