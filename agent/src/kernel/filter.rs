//! The capture filter: a `[filter]` config section compiled into kernel maps (so suppressed
//! events cost no ring-buffer space), recorded on the chain as a FILTER policy entry at start
//! and on every change (SIGHUP reloads it without reloading programs), with the per-rule
//! suppressed counts recorded at every seal. Completeness is always relative to a logged policy.
//!
//! Exec, fork and exit are never filtered: they are the lineage everything else hangs on.

use std::collections::BTreeMap;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray},
    Ebpf,
};
use lineage_common::{
    builtin_rule, file_op, filter_mode, net_op, rule_action, FilterConfig, FilterRule, COMM_LEN,
    FILTER_SLOTS, FIRST_USER_RULE, PATH_CAP,
};
use lineage_evidence::entry::{Filter, FilterCount};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSettings {
    pub file_ops: Vec<String>,
    pub net_ops: Vec<String>,
    pub open_flags: Vec<String>,
    pub include_paths: Vec<String>,
    pub exclude_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub except_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_cgroup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub except_cgroup: Option<u64>,
    pub only_comms: Vec<String>,
    pub except_comms: Vec<String>,
}

// Every op the kernel programs record must be listed here, or `file_ops`/`net_ops` could not
// switch it off and an empty list would not mean "none".
const FILE_OPS: [(&str, u32); 14] = [
    ("open", file_op::OPEN),
    ("unlink", file_op::UNLINK),
    ("rename", file_op::RENAME),
    ("chmod", file_op::CHMOD),
    ("chown", file_op::CHOWN),
    ("link", file_op::LINK),
    ("symlink", file_op::SYMLINK),
    ("mkdir", file_op::MKDIR),
    ("rmdir", file_op::RMDIR),
    ("mknod", file_op::MKNOD),
    ("truncate", file_op::TRUNCATE),
    ("setxattr", file_op::SETXATTR),
    ("removexattr", file_op::REMOVEXATTR),
    ("utimes", file_op::UTIMES),
];
const NET_OPS: [(&str, u32); 5] = [
    ("connect", net_op::CONNECT),
    ("accept", net_op::ACCEPT),
    ("bind", net_op::BIND),
    ("listen", net_op::LISTEN),
    ("send", net_op::SEND),
];
const OPEN_FLAGS: [(&str, u32); 6] = [
    ("O_WRONLY", 0o1),
    ("O_RDWR", 0o2),
    ("O_CREAT", 0o100),
    ("O_EXCL", 0o200),
    ("O_TRUNC", 0o1000),
    ("O_APPEND", 0o2000),
];

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            file_ops: FILE_OPS.iter().map(|(n, _)| n.to_string()).collect(),
            net_ops: NET_OPS.iter().map(|(n, _)| n.to_string()).collect(),
            open_flags: Vec::new(),
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
            only_uid: None,
            except_uid: None,
            only_cgroup: None,
            except_cgroup: None,
            only_comms: Vec::new(),
            except_comms: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter.{key}: {reason}: {value:?}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("writing filter map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("filter map {0} missing from the eBPF object")]
    MissingMap(&'static str),
}

/// A rule the kernel counts under its own slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRule {
    pub id: u32,
    pub description: String,
}

/// Settings compiled for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub config: FilterConfig,
    pub paths: Vec<(String, FilterRule)>,
    pub comms: Vec<([u8; COMM_LEN], FilterRule)>,
    /// Every counter slot and what it means, for the policy text.
    pub rules: Vec<NamedRule>,
    /// The policy text recorded on the chain.
    pub policy_text: String,
}

fn invalid(key: &'static str, value: &str, reason: &'static str) -> FilterError {
    FilterError::Invalid {
        key,
        value: value.into(),
        reason,
    }
}

fn mode(
    only: Option<u64>,
    except: Option<u64>,
    key: &'static str,
) -> Result<(u32, u64), FilterError> {
    match (only, except) {
        (Some(_), Some(_)) => Err(invalid(key, "both", "set only_ or except_, not both")),
        (Some(v), None) => Ok((filter_mode::ONLY, v)),
        (None, Some(v)) => Ok((filter_mode::EXCEPT, v)),
        (None, None) => Ok((filter_mode::OFF, 0)),
    }
}

impl FilterSettings {
    /// Validates and compiles; every error names the key and the offending value.
    pub fn compile(&self) -> Result<Compiled, FilterError> {
        let mut config = FilterConfig::default();
        let mut rules = vec![
            NamedRule {
                id: builtin_rule::OP_DISABLED,
                description: "event kind disabled".into(),
            },
            NamedRule {
                id: builtin_rule::UID,
                description: "uid rule".into(),
            },
            NamedRule {
                id: builtin_rule::CGROUP,
                description: "cgroup rule".into(),
            },
            NamedRule {
                id: builtin_rule::COMM_NOT_LISTED,
                description: "comm not in only_comms".into(),
            },
            NamedRule {
                id: builtin_rule::OPEN_FLAGS,
                description: "open without the listed flags".into(),
            },
            NamedRule {
                id: builtin_rule::PATH_NOT_INCLUDED,
                description: "path under no include prefix".into(),
            },
        ];
        let lookup = |table: &[(&str, u32)], key: &'static str, name: &str| {
            table
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| invalid(key, name, "unknown name"))
        };
        let enabled_file: Vec<u32> = self
            .file_ops
            .iter()
            .map(|n| lookup(&FILE_OPS, "file_ops", n))
            .collect::<Result<_, _>>()?;
        let enabled_net: Vec<u32> = self
            .net_ops
            .iter()
            .map(|n| lookup(&NET_OPS, "net_ops", n))
            .collect::<Result<_, _>>()?;
        for (_, op) in FILE_OPS {
            if !enabled_file.contains(&op) {
                config.disabled_ops |= 1 << op;
            }
        }
        for (_, op) in NET_OPS {
            if !enabled_net.contains(&op) {
                config.disabled_ops |= 1 << (16 + op);
            }
        }
        for f in &self.open_flags {
            config.open_flags_mask |= lookup(&OPEN_FLAGS, "open_flags", f)?;
        }
        let (uid_mode, uid) = mode(
            self.only_uid.map(u64::from),
            self.except_uid.map(u64::from),
            "only_uid/except_uid",
        )?;
        (config.uid_mode, config.uid) = (uid_mode, uid as u32);
        (config.cgroup_mode, config.cgroup_id) = mode(
            self.only_cgroup,
            self.except_cgroup,
            "only_cgroup/except_cgroup",
        )?;

        let mut next_id = FIRST_USER_RULE;
        let mut take_id = |key: &'static str, value: &str| {
            let id = next_id;
            next_id += 1;
            if id >= FILTER_SLOTS {
                return Err(invalid(key, value, "too many filter rules (at most 56)"));
            }
            Ok(id)
        };
        let mut paths = Vec::new();
        for (key, list, action) in [
            ("exclude_paths", &self.exclude_paths, rule_action::EXCLUDE),
            ("include_paths", &self.include_paths, rule_action::INCLUDE),
        ] {
            for p in list {
                if !p.starts_with('/') || p.len() >= PATH_CAP {
                    return Err(invalid(
                        key,
                        p,
                        "must be an absolute path shorter than 256 bytes",
                    ));
                }
                let id = take_id(key, p)?;
                rules.push(NamedRule {
                    id,
                    description: format!("{key}: {p}"),
                });
                paths.push((
                    p.clone(),
                    FilterRule {
                        action,
                        rule_id: id,
                    },
                ));
            }
        }
        config.path_default_exclude = u32::from(!self.include_paths.is_empty());
        let mut comms = Vec::new();
        if !self.only_comms.is_empty() && !self.except_comms.is_empty() {
            return Err(invalid(
                "only_comms/except_comms",
                "both",
                "set one of them, not both",
            ));
        }
        for (key, list, action) in [
            ("only_comms", &self.only_comms, rule_action::INCLUDE),
            ("except_comms", &self.except_comms, rule_action::EXCLUDE),
        ] {
            for c in list {
                if c.is_empty() || c.len() >= COMM_LEN {
                    return Err(invalid(key, c, "a comm has 1 to 15 bytes"));
                }
                let mut raw = [0u8; COMM_LEN];
                raw[..c.len()].copy_from_slice(c.as_bytes());
                let id = take_id(key, c)?;
                rules.push(NamedRule {
                    id,
                    description: format!("{key}: {c}"),
                });
                comms.push((
                    raw,
                    FilterRule {
                        action,
                        rule_id: id,
                    },
                ));
            }
        }
        config.comm_mode = if !self.only_comms.is_empty() {
            filter_mode::ONLY
        } else if !self.except_comms.is_empty() {
            filter_mode::EXCEPT
        } else {
            filter_mode::OFF
        };
        let policy_text = policy_text(self, &rules);
        Ok(Compiled {
            config,
            paths,
            comms,
            rules,
            policy_text,
        })
    }
}

/// The policy as recorded on the chain: the settings and what each counter slot means.
fn policy_text(settings: &FilterSettings, rules: &[NamedRule]) -> String {
    let mut text = toml::to_string(settings).unwrap_or_default();
    text.push_str("\n[rules]\n");
    for r in rules {
        text.push_str(&format!("{} = {:?}\n", r.id, r.description));
    }
    text
}

fn path_key(path: &str) -> Key<[u8; PATH_CAP]> {
    let mut data = [0u8; PATH_CAP];
    data[..path.len()].copy_from_slice(path.as_bytes());
    Key::new((path.len() * 8) as u32, data)
}

/// Replaces the kernel's filter maps with `compiled` (entries not in it are removed).
pub fn apply(ebpf: &mut Ebpf, compiled: &Compiled) -> Result<(), FilterError> {
    let map_err = |map| move |source| FilterError::Map { map, source };
    {
        let m = ebpf
            .map_mut("PATH_FILTER")
            .ok_or(FilterError::MissingMap("PATH_FILTER"))?;
        let mut trie: LpmTrie<_, [u8; PATH_CAP], FilterRule> =
            LpmTrie::try_from(m).map_err(map_err("PATH_FILTER"))?;
        let old: Vec<Key<[u8; PATH_CAP]>> = trie.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = trie.remove(&k);
        }
        for (p, rule) in &compiled.paths {
            trie.insert(&path_key(p), *rule, 0)
                .map_err(map_err("PATH_FILTER"))?;
        }
    }
    {
        let m = ebpf
            .map_mut("COMM_FILTER")
            .ok_or(FilterError::MissingMap("COMM_FILTER"))?;
        let mut comms: HashMap<_, [u8; COMM_LEN], FilterRule> =
            HashMap::try_from(m).map_err(map_err("COMM_FILTER"))?;
        let old: Vec<[u8; COMM_LEN]> = comms.keys().filter_map(Result::ok).collect();
        for k in old {
            let _ = comms.remove(&k);
        }
        for (c, rule) in &compiled.comms {
            comms.insert(c, *rule, 0).map_err(map_err("COMM_FILTER"))?;
        }
    }
    // The config slot last: the rules it refers to are in place before they take effect.
    let m = ebpf
        .map_mut("FILTER_CONFIG")
        .ok_or(FilterError::MissingMap("FILTER_CONFIG"))?;
    let mut config: Array<_, FilterConfig> =
        Array::try_from(m).map_err(map_err("FILTER_CONFIG"))?;
    config
        .set(0, compiled.config, 0)
        .map_err(map_err("FILTER_CONFIG"))?;
    Ok(())
}

/// How the kernel's filter maps differ from `compiled`, one line per difference (empty when
/// they match). Root can write these maps behind the agent's back (`bpftool map update`); the
/// agent compares them with its own copy at every seal and records any difference as TAMPER.
pub fn differences(ebpf: &Ebpf, compiled: &Compiled) -> Result<Vec<String>, FilterError> {
    let map_err = |map| move |source| FilterError::Map { map, source };
    let mut out = Vec::new();
    let m = ebpf
        .map("FILTER_CONFIG")
        .ok_or(FilterError::MissingMap("FILTER_CONFIG"))?;
    let config: Array<_, FilterConfig> = Array::try_from(m).map_err(map_err("FILTER_CONFIG"))?;
    let found = config.get(&0, 0).map_err(map_err("FILTER_CONFIG"))?;
    if found != compiled.config {
        out.push(format!(
            "FILTER_CONFIG[0] is {found:?}, the policy says {:?}",
            compiled.config
        ));
    }

    let m = ebpf
        .map("PATH_FILTER")
        .ok_or(FilterError::MissingMap("PATH_FILTER"))?;
    let trie: LpmTrie<_, [u8; PATH_CAP], FilterRule> =
        LpmTrie::try_from(m).map_err(map_err("PATH_FILTER"))?;
    let mut kernel: Vec<(u32, [u8; PATH_CAP], FilterRule)> = Vec::new();
    for item in trie.iter() {
        let (k, v) = item.map_err(map_err("PATH_FILTER"))?;
        kernel.push((k.prefix_len(), k.data(), v));
    }
    let mut want: Vec<(u32, [u8; PATH_CAP], FilterRule)> = compiled
        .paths
        .iter()
        .map(|(p, r)| {
            let k = path_key(p);
            (k.prefix_len(), k.data(), *r)
        })
        .collect();
    kernel.sort_by_key(|a| (a.0, a.1));
    want.sort_by_key(|a| (a.0, a.1));
    if kernel != want {
        out.push(format!(
            "PATH_FILTER holds {} rules, the policy {} (or they differ)",
            kernel.len(),
            want.len()
        ));
    }

    let m = ebpf
        .map("COMM_FILTER")
        .ok_or(FilterError::MissingMap("COMM_FILTER"))?;
    let comms: HashMap<_, [u8; COMM_LEN], FilterRule> =
        HashMap::try_from(m).map_err(map_err("COMM_FILTER"))?;
    let mut kernel: Vec<([u8; COMM_LEN], FilterRule)> = Vec::new();
    for item in comms.iter() {
        kernel.push(item.map_err(map_err("COMM_FILTER"))?);
    }
    let mut want = compiled.comms.clone();
    kernel.sort_by_key(|(c, _)| *c);
    want.sort_by_key(|(c, _)| *c);
    if kernel != want {
        out.push(format!(
            "COMM_FILTER holds {} rules, the policy {} (or they differ)",
            kernel.len(),
            want.len()
        ));
    }
    Ok(out)
}

/// Cumulative suppressed counts by rule slot, summed over CPUs.
pub fn read_counts(ebpf: &Ebpf) -> Result<Vec<u64>, FilterError> {
    let m = ebpf
        .map("FILTERED")
        .ok_or(FilterError::MissingMap("FILTERED"))?;
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(m).map_err(|source| FilterError::Map {
            map: "FILTERED",
            source,
        })?;
    sum_slots(&counters)
}

/// The FILTERED counters through a file descriptor of its own, so the writer thread can read
/// them at each seal while the capture thread keeps the loaded object.
pub struct CountsReader(PerCpuArray<MapData, u64>);

impl CountsReader {
    pub fn open(ebpf: &Ebpf) -> Result<Self, FilterError> {
        let err = |source| FilterError::Map {
            map: "FILTERED",
            source,
        };
        let id = match ebpf.map("FILTERED") {
            Some(aya::maps::Map::PerCpuArray(data)) => data.info().map_err(err)?.id(),
            Some(_) | None => return Err(FilterError::MissingMap("FILTERED")),
        };
        let data = MapData::from_id(id).map_err(err)?;
        PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
            .map(CountsReader)
            .map_err(err)
    }

    pub fn read(&self) -> Result<Vec<u64>, FilterError> {
        sum_slots(&self.0)
    }
}

/// Each FILTERED slot summed over the CPUs.
fn sum_slots<T: std::borrow::Borrow<MapData>>(
    counters: &PerCpuArray<T, u64>,
) -> Result<Vec<u64>, FilterError> {
    (0..FILTER_SLOTS)
        .map(|slot| {
            counters
                .get(&slot, 0)
                .map(|v| v.iter().sum())
                .map_err(|source| FilterError::Map {
                    map: "FILTERED",
                    source,
                })
        })
        .collect()
}

/// Tracks what was last recorded, to write FILTER entries with deltas only.
pub struct FilterLedger {
    policy: Filter,
    recorded: Vec<u64>,
}

impl FilterLedger {
    pub fn new(compiled: &Compiled, counts_now: Vec<u64>) -> Self {
        FilterLedger {
            policy: Filter::policy(&compiled.policy_text),
            recorded: counts_now,
        }
    }

    pub fn policy_entry(&self) -> &Filter {
        &self.policy
    }

    /// A COUNTS entry for what changed since the last one, if anything did.
    pub fn counts_entry(&mut self, counts_now: &[u64]) -> Option<Filter> {
        let Filter::Policy { policy_digest, .. } = &self.policy else {
            return None;
        };
        let deltas: BTreeMap<u32, u64> = counts_now
            .iter()
            .enumerate()
            .filter_map(|(slot, now)| {
                let delta = now.saturating_sub(self.recorded.get(slot).copied().unwrap_or(0));
                (delta > 0).then_some((slot as u32, delta))
            })
            .collect();
        self.recorded = counts_now.to_vec();
        (!deltas.is_empty()).then(|| Filter::Counts {
            policy_digest: *policy_digest,
            counts: deltas
                .into_iter()
                .map(|(rule_id, suppressed)| FilterCount {
                    rule_id,
                    suppressed,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_records_everything() {
        let c = FilterSettings::default().compile().unwrap();
        assert_eq!(c.config, FilterConfig::default());
        assert!(c.paths.is_empty() && c.comms.is_empty());
    }

    #[test]
    fn empty_op_lists_switch_off_every_recorded_op() {
        let s = FilterSettings {
            file_ops: vec![],
            net_ops: vec![],
            ..FilterSettings::default()
        };
        let disabled = s.compile().unwrap().config.disabled_ops;
        for op in file_op::OPEN..=file_op::UTIMES {
            assert_ne!(
                disabled & (1 << op),
                0,
                "file op {op} cannot be switched off"
            );
        }
        for op in net_op::CONNECT..=net_op::SEND {
            assert_ne!(
                disabled & (1 << (16 + op)),
                0,
                "net op {op} cannot be switched off"
            );
        }
    }

    #[test]
    fn rules_get_slots_and_bad_values_are_named() {
        let s = FilterSettings {
            file_ops: vec!["open".into()],
            net_ops: vec![],
            open_flags: vec!["O_WRONLY".into(), "O_CREAT".into()],
            exclude_paths: vec!["/proc".into(), "/tmp/skip".into()],
            except_comms: vec!["noisy".into()],
            only_uid: Some(1000),
            ..FilterSettings::default()
        };
        let c = s.compile().unwrap();
        assert_eq!(c.config.disabled_ops & (1 << file_op::OPEN), 0);
        assert_ne!(c.config.disabled_ops & (1 << file_op::UNLINK), 0);
        assert_ne!(c.config.disabled_ops & (1 << (16 + net_op::CONNECT)), 0);
        assert_eq!(c.config.open_flags_mask, 0o101);
        assert_eq!((c.config.uid_mode, c.config.uid), (filter_mode::ONLY, 1000));
        assert_eq!(
            c.paths[1],
            (
                "/tmp/skip".to_string(),
                FilterRule {
                    action: rule_action::EXCLUDE,
                    rule_id: FIRST_USER_RULE + 1
                }
            )
        );
        assert_eq!(c.comms[0].1.rule_id, FIRST_USER_RULE + 2);
        assert!(
            c.policy_text.contains("9 = \"exclude_paths: /tmp/skip\""),
            "{}",
            c.policy_text
        );

        let bad = FilterSettings {
            exclude_paths: vec!["relative".into()],
            ..Default::default()
        };
        assert!(bad
            .compile()
            .unwrap_err()
            .to_string()
            .contains("filter.exclude_paths"));
        let bad = FilterSettings {
            open_flags: vec!["O_BOGUS".into()],
            ..Default::default()
        };
        assert!(bad.compile().unwrap_err().to_string().contains("O_BOGUS"));
        let bad = FilterSettings {
            only_uid: Some(1),
            except_uid: Some(2),
            ..Default::default()
        };
        assert!(bad.compile().is_err());
    }

    #[test]
    fn ledger_records_only_deltas() {
        let c = FilterSettings::default().compile().unwrap();
        let mut l = FilterLedger::new(&c, vec![0; 64]);
        let mut now = vec![0u64; 64];
        assert!(l.counts_entry(&now).is_none());
        now[9] = 5;
        let Some(Filter::Counts { counts, .. }) = l.counts_entry(&now) else {
            panic!()
        };
        assert_eq!(
            counts,
            vec![FilterCount {
                rule_id: 9,
                suppressed: 5
            }]
        );
        assert!(l.counts_entry(&now).is_none());
    }
}
