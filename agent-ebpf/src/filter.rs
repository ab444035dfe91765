//! Kernel-side filters: cheap checks on the acting task before anything is copied, each
//! suppression counted per rule so completeness stays relative to a recorded policy.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_uid_gid, generated::bpf_get_current_cgroup_id,
};
use lineage_common::{builtin_rule, filter_mode, rule_action, FilterConfig};

use crate::maps::{COMM_FILTER, FILTERED, FILTER_CONFIG};

#[inline(always)]
pub fn count(rule_id: u32) {
    if let Some(slot) = FILTERED.get_ptr_mut(rule_id) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn config() -> FilterConfig {
    FILTER_CONFIG.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn mode_blocks(mode: u32, matches: bool) -> bool {
    (mode == filter_mode::ONLY && !matches) || (mode == filter_mode::EXCEPT && matches)
}

/// Whether the uid, cgroup and comm rules let the current task's events through; a
/// suppression is counted against the rule that made it.
#[inline(always)]
pub fn actor_allowed(cfg: &FilterConfig) -> bool {
    if cfg.uid_mode != filter_mode::OFF {
        let uid = bpf_get_current_uid_gid() as u32;
        if mode_blocks(cfg.uid_mode, uid == cfg.uid) {
            count(builtin_rule::UID);
            return false;
        }
    }
    if cfg.cgroup_mode != filter_mode::OFF {
        // SAFETY: no preconditions.
        let cgroup = unsafe { bpf_get_current_cgroup_id() };
        if mode_blocks(cfg.cgroup_mode, cgroup == cfg.cgroup_id) {
            count(builtin_rule::CGROUP);
            return false;
        }
    }
    if cfg.comm_mode != filter_mode::OFF {
        let comm = bpf_get_current_comm().unwrap_or([0; 16]);
        // SAFETY: the value is copied out before the map can change under us.
        match unsafe { COMM_FILTER.get(&comm) }.copied() {
            Some(rule) if rule.action == rule_action::EXCLUDE => {
                count(rule.rule_id);
                return false;
            }
            Some(_) => {}
            None if cfg.comm_mode == filter_mode::ONLY => {
                count(builtin_rule::COMM_NOT_LISTED);
                return false;
            }
            None => {}
        }
    }
    true
}
