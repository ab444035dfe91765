//! Live events for `Tail`, and the filters a client can ask the agent to apply.

use lineage_proto::v1::TailFilter;

use crate::capture::lineage::ExecId;

/// One event as the capture loop publishes it: the JSON the client receives, plus the fields
/// filters look at, so filtering never parses JSON.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub json: String,
    pub kind: &'static str,
    pub exec_id: Option<ExecId>,
    pub ancestors: Vec<ExecId>,
    pub binary: String,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// Container id, when the process runs in one.
    pub container: Option<String>,
}

pub fn matches(filter: &TailFilter, ev: &LiveEvent) -> bool {
    if !filter.kinds.is_empty() && !filter.kinds.iter().any(|k| k == ev.kind) {
        return false;
    }
    if !filter.exec_id_subtree.is_empty() {
        let root = filter.exec_id_subtree.as_str();
        let inside =
            ev.exec_id.as_deref() == Some(root) || ev.ancestors.iter().any(|a| a.as_ref() == root);
        if !inside {
            return false;
        }
    }
    if !filter.binary_pattern.is_empty()
        && !ev.binary.contains(&filter.binary_pattern)
        && !ev.comm.contains(&filter.binary_pattern)
    {
        return false;
    }
    if filter.uid.is_some_and(|uid| uid != ev.uid) {
        return false;
    }
    if filter.cgroup_id.is_some_and(|id| id != ev.cgroup_id) {
        return false;
    }
    filter.container.is_empty()
        || ev
            .container
            .as_deref()
            .is_some_and(|c| c.starts_with(&filter.container))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> LiveEvent {
        LiveEvent {
            json: "{}".into(),
            kind: "exec",
            exec_id: Some("b-3-3".into()),
            ancestors: vec!["b-2-2".into(), "b-1-1".into()],
            binary: "/usr/bin/curl".into(),
            comm: "curl".into(),
            uid: 1000,
            cgroup_id: 7,
            container: Some("abcdef".into()),
        }
    }

    #[test]
    fn filters_combine() {
        assert!(matches(&TailFilter::default(), &ev()));
        let f = |f: TailFilter| matches(&f, &ev());
        assert!(f(TailFilter {
            kinds: vec!["exec".into()],
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            kinds: vec!["exit".into()],
            ..Default::default()
        }));
        assert!(f(TailFilter {
            exec_id_subtree: "b-1-1".into(),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            exec_id_subtree: "b-9-9".into(),
            ..Default::default()
        }));
        assert!(f(TailFilter {
            binary_pattern: "curl".into(),
            uid: Some(1000),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            uid: Some(0),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            cgroup_id: Some(8),
            ..Default::default()
        }));
        assert!(
            f(TailFilter {
                container: "abc".into(),
                ..Default::default()
            }),
            "a container id prefix matches"
        );
        assert!(!f(TailFilter {
            container: "fff".into(),
            ..Default::default()
        }));
    }
}
