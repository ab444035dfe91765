//! Enforcement (docs/ENFORCEMENT.md): the `[enforcement]` config section — mode, liveness
//! deadline, scope, allowlist and deny rules — compiled into kernel maps, and the chain entries
//! that make every mode, policy and decision evidence (ENFORCEMENT entries, docs/FORMAT.md).

mod enforcer;
pub mod kernel;

pub use enforcer::Enforcer;

use std::{
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use lineage_common::{enforce_mode, EnforceConfig, NET4_KEY_LEN, NET6_KEY_LEN, PATH_CAP};
use lineage_evidence::entry::{Enforcement, EnforcementForm};
use serde::{Deserialize, Serialize};

/// What the agent does besides recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record only (no enforcement programs are attached).
    #[default]
    Observe,
    /// Deny execs and connects that cannot be recorded or that a deny rule names.
    Enforce,
    /// Decide and record what enforce would deny; deny nothing.
    DryRun,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
        }
    }

    fn kernel(self) -> u32 {
        match self {
            Mode::Observe => enforce_mode::OBSERVE,
            Mode::Enforce => enforce_mode::ENFORCE,
            Mode::DryRun => enforce_mode::DRY_RUN,
        }
    }
}

/// A deny-exec rule: any of its set fields matching denies the exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyExec {
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// A cgroup v2 directory; only tasks directly in it match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

/// A deny-connect rule: destination in `cidr`, and on `port` unless it is 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyConnect {
    pub id: u32,
    pub cidr: String,
    #[serde(default)]
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcementSettings {
    pub mode: Mode,
    pub heartbeat_deadline_ms: u64,
    pub cgroup_root: PathBuf,
    pub scope_cgroups: Vec<PathBuf>,
    pub allow_uids: Vec<u32>,
    pub allow_cgroups: Vec<PathBuf>,
    pub allow_paths: Vec<String>,
    pub deny_exec: Vec<DenyExec>,
    pub deny_connect: Vec<DenyConnect>,
}

impl Default for EnforcementSettings {
    fn default() -> Self {
        EnforcementSettings {
            mode: Mode::Observe,
            heartbeat_deadline_ms: 2000,
            cgroup_root: "/sys/fs/cgroup/unified".into(),
            scope_cgroups: Vec::new(),
            allow_uids: Vec::new(),
            allow_cgroups: Vec::new(),
            allow_paths: Vec::new(),
            deny_exec: Vec::new(),
            deny_connect: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("enforcement.{key}: {reason}: {value:?}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("enforcement: cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("enforcement map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("enforcement map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("enforcement program {program}: {source}")]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
}

fn invalid(key: &'static str, value: impl ToString, reason: &'static str) -> EnforceError {
    EnforceError::Invalid {
        key,
        value: value.to_string(),
        reason,
    }
}

/// The kernel's id of a cgroup v2 directory is its inode number.
fn cgroup_id(path: &Path) -> Result<u64, EnforceError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| EnforceError::Cgroup {
            path: path.into(),
            source,
        })
}

/// An LPM key over a path prefix (the filename as the kernel executed it).
fn path_key(key: &'static str, path: &str) -> Result<(u32, [u8; PATH_CAP]), EnforceError> {
    if !path.starts_with('/') || path.len() >= PATH_CAP {
        return Err(invalid(
            key,
            path,
            "must be absolute and shorter than 256 bytes",
        ));
    }
    let mut data = [0u8; PATH_CAP];
    data[..path.len()].copy_from_slice(path.as_bytes());
    Ok(((path.len() * 8) as u32, data))
}

/// Connect rule keys: port (network order, 0 = any), then the address; prefix 16 + bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetKey {
    V4(u32, [u8; NET4_KEY_LEN]),
    V6(u32, [u8; NET6_KEY_LEN]),
}

fn net_key(rule: &DenyConnect) -> Result<NetKey, EnforceError> {
    let (addr, bits) = match rule.cidr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (rule.cidr.as_str(), None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| invalid("deny_connect.cidr", &rule.cidr, "not an address/prefix"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits: u32 = match bits {
        Some(b) => b
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| invalid("deny_connect.cidr", &rule.cidr, "bad prefix length"))?,
        None => max,
    };
    let port = rule.port.to_be_bytes();
    Ok(match addr {
        IpAddr::V4(a) => {
            let mut d = [0u8; NET4_KEY_LEN];
            d[..2].copy_from_slice(&port);
            d[2..6].copy_from_slice(&a.octets());
            NetKey::V4(16 + bits, d)
        }
        IpAddr::V6(a) => {
            let mut d = [0u8; NET6_KEY_LEN];
            d[..2].copy_from_slice(&port);
            d[2..].copy_from_slice(&a.octets());
            NetKey::V6(16 + bits, d)
        }
    })
}

/// The settings compiled for the kernel, with the policy text recorded on the chain.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub mode: Mode,
    pub config: EnforceConfig,
    pub scope: Vec<u64>,
    pub allow_uids: Vec<u32>,
    pub allow_cgroups: Vec<u64>,
    pub allow_paths: Vec<(u32, [u8; PATH_CAP])>,
    pub deny_paths: Vec<((u32, [u8; PATH_CAP]), u32)>,
    pub deny_uids: Vec<(u32, u32)>,
    pub deny_cgroups: Vec<(u64, u32)>,
    pub deny_net: Vec<(NetKey, u32)>,
    /// TOML of the whole `[enforcement]` section plus the resolved cgroup ids.
    pub policy_text: String,
}

impl EnforcementSettings {
    /// Validates and resolves; every error names the key and the offending value.
    pub fn compile(&self) -> Result<Compiled, EnforceError> {
        if !(100..=3_600_000).contains(&self.heartbeat_deadline_ms) {
            return Err(invalid(
                "heartbeat_deadline_ms",
                self.heartbeat_deadline_ms,
                "must be between 100 and 3600000",
            ));
        }
        let ids = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| cgroup_id(p))
                .collect::<Result<Vec<_>, _>>()
        };
        let scope = ids(&self.scope_cgroups)?;
        let allow_cgroups = ids(&self.allow_cgroups)?;
        let allow_paths = self
            .allow_paths
            .iter()
            .map(|p| path_key("allow_paths", p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::BTreeSet::new();
        let (mut deny_paths, mut deny_uids, mut deny_cgroups, mut deny_net) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in &self.deny_exec {
            if r.id == 0 || !seen.insert(r.id) {
                return Err(invalid(
                    "deny_exec.id",
                    r.id,
                    "ids must be unique and non-zero",
                ));
            }
            if r.path_prefix.is_none() && r.uid.is_none() && r.cgroup.is_none() {
                return Err(invalid(
                    "deny_exec",
                    r.id,
                    "a rule needs path_prefix, uid or cgroup",
                ));
            }
            if let Some(p) = &r.path_prefix {
                deny_paths.push((path_key("deny_exec.path_prefix", p)?, r.id));
            }
            if let Some(u) = r.uid {
                deny_uids.push((u, r.id));
            }
            if let Some(c) = &r.cgroup {
                deny_cgroups.push((cgroup_id(c)?, r.id));
            }
        }
        for r in &self.deny_connect {
            if r.id == 0 || !seen.insert(r.id) {
                return Err(invalid(
                    "deny_connect.id",
                    r.id,
                    "ids must be unique and non-zero",
                ));
            }
            deny_net.push((net_key(r)?, r.id));
        }
        let mut text = toml::to_string(self).unwrap_or_default();
        text.push_str(&format!(
            "\n# resolved cgroup ids: scope = {scope:?}, allow = {allow_cgroups:?}\n"
        ));
        Ok(Compiled {
            mode: self.mode,
            config: EnforceConfig {
                mode: self.mode.kernel(),
                scoped: u32::from(!scope.is_empty()),
                deadline_ns: self.heartbeat_deadline_ms * 1_000_000,
            },
            scope,
            allow_uids: self.allow_uids.clone(),
            allow_cgroups,
            allow_paths,
            deny_paths,
            deny_uids,
            deny_cgroups,
            deny_net,
            policy_text: text,
        })
    }
}

/// A MODE entry: the mode in force from here on, and the one it replaced.
pub fn mode_entry(mode: Mode, previous: Option<Mode>, deadline_ms: u64) -> Enforcement {
    Enforcement {
        form: EnforcementForm::Mode,
        json: serde_json::json!({
            "mode": mode.name(),
            "previous": previous.map(Mode::name),
            "heartbeat_deadline_ms": deadline_ms,
        })
        .to_string(),
    }
}

/// A POLICY entry: the policy text and its BLAKE3 digest.
pub fn policy_entry(compiled: &Compiled) -> Enforcement {
    let digest = blake3::hash(compiled.policy_text.as_bytes()).to_hex();
    Enforcement {
        form: EnforcementForm::Policy,
        json: serde_json::json!({
            "policy_digest": digest.as_str(),
            "text": compiled.policy_text,
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_rules_compile_to_port_then_prefix_keys() {
        let rule = DenyConnect {
            id: 7,
            cidr: "10.1.0.0/16".into(),
            port: 443,
        };
        let NetKey::V4(bits, data) = net_key(&rule).unwrap() else {
            panic!("v4 rule")
        };
        assert_eq!(bits, 16 + 16);
        assert_eq!(&data[..6], &[1, 187, 10, 1, 0, 0]);
        let any = DenyConnect {
            port: 0,
            cidr: "::1".into(),
            id: 8,
        };
        assert!(matches!(net_key(&any).unwrap(), NetKey::V6(144, _)));
        for bad in ["10.0.0.0/33", "nope", "::/129"] {
            let r = DenyConnect {
                id: 1,
                cidr: bad.into(),
                port: 0,
            };
            assert!(net_key(&r).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_need_unique_ids_and_a_match() {
        let mut s = EnforcementSettings::default();
        s.deny_exec.push(DenyExec {
            id: 5,
            path_prefix: None,
            uid: None,
            cgroup: None,
        });
        assert!(s.compile().is_err());
        s.deny_exec[0].uid = Some(1000);
        s.deny_connect.push(DenyConnect {
            id: 5,
            cidr: "127.0.0.1".into(),
            port: 1,
        });
        assert!(s.compile().is_err());
        s.deny_connect[0].id = 6;
        let c = s.compile().unwrap();
        assert_eq!(c.deny_uids, vec![(1000, 5)]);
        assert_eq!(c.config.deadline_ns, 2_000_000_000);
    }
}
