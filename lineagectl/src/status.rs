//! `lineagectl status`: who an agent is, where its chain stands, and whether its probes run.

use std::io;

use lineage_proto::v1::{AgentInfo, GetInfoRequest};
use serde_json::json;

use crate::cli::StatusArgs;
use crate::connect::{self, ConnectError, RpcError};
use crate::exit;
use crate::style::{Paint, Style};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub fn run(a: &StatusArgs) -> Result<i32, StatusError> {
    let info = connect::runtime()
        .map_err(StatusError::Runtime)?
        .block_on(async {
            let (mut client, target) = connect::connect(&a.conn).await?;
            client
                .get_info(GetInfoRequest {})
                .await
                .map(|r| r.into_inner())
                .map_err(|s| StatusError::from(RpcError::new("GetInfo", &target, s)))
        })?;
    if a.json {
        println!("{}", to_json(&info));
    } else {
        for l in text(&info, Style::for_stdout()) {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

fn key_id(info: &AgentInfo) -> String {
    info.signing_key
        .as_ref()
        .map(|k| hex::encode(&k.key_id))
        .unwrap_or_default()
}

pub fn to_json(info: &AgentInfo) -> serde_json::Value {
    json!({
        "host_id": hex::encode(&info.host_id),
        "hostname": info.hostname,
        "boot_id": info.boot_id,
        "agent_version": info.agent_version,
        "kernel_version": info.kernel_version,
        "signing_key": info.signing_key.as_ref().map(|k| json!({
            "public": hex::encode(&k.key),
            "key_id": hex::encode(&k.key_id),
        })),
        "next_index": info.next_index,
        "head_link": hex::encode(&info.head_link),
        "last_segment": info.last_segment,
        "last_segment_digest": (!info.last_segment_digest.is_empty())
            .then(|| hex::encode(&info.last_segment_digest)),
        "first_segment": info.first_segment,
        "probes": info.probes.iter().map(|p| json!({
            "program": p.program,
            "hook": p.hook,
            "required": p.required,
            "attached": p.attached,
            "error": (!p.error.is_empty()).then_some(&p.error),
        })).collect::<Vec<_>>(),
    })
}

pub fn text(info: &AgentInfo, style: Style) -> Vec<String> {
    let mut out = vec![
        format!(
            "host:        {} (host id {})",
            style.paint(Paint::Bold, &info.hostname),
            hex::encode(&info.host_id)
        ),
        format!("boot id:     {}", info.boot_id),
        format!(
            "versions:    agent {}, kernel {}",
            info.agent_version, info.kernel_version
        ),
        format!("signing key: {}", key_id(info)),
        format!(
            "chain:       next index {}, head link {}",
            info.next_index,
            hex::encode(&info.head_link)
        ),
    ];
    out.push(match (info.first_segment, info.last_segment) {
        (_, None) => "segments:    none sealed yet".into(),
        (first, Some(last)) => format!(
            "segments:    {} to {} (last digest {})",
            first.map_or("?".into(), |f| f.to_string()),
            last,
            hex::encode(&info.last_segment_digest)
        ),
    });
    let attached = info.probes.iter().filter(|p| p.attached).count();
    out.push(format!(
        "probes:      {attached} of {} attached",
        info.probes.len()
    ));
    let w_prog = info
        .probes
        .iter()
        .map(|p| p.program.len())
        .max()
        .unwrap_or(0)
        .max("PROGRAM".len());
    let w_hook = info
        .probes
        .iter()
        .map(|p| p.hook.len())
        .max()
        .unwrap_or(0)
        .max("HOOK".len());
    out.push(format!(
        "  {:<w_prog$}  {:<w_hook$}  {:<8}  STATUS",
        "PROGRAM", "HOOK", "REQUIRED"
    ));
    for p in &info.probes {
        let status = if p.attached {
            style.paint(Paint::Green, "attached").into_owned()
        } else if p.error.is_empty() {
            style.paint(Paint::Red, "FAILED").into_owned()
        } else {
            format!("{}: {}", style.paint(Paint::Red, "FAILED"), p.error)
        };
        out.push(format!(
            "  {:<w_prog$}  {:<w_hook$}  {:<8}  {status}",
            p.program,
            p.hook,
            if p.required { "yes" } else { "no" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_proto::v1::ProbeStatus;

    fn info() -> AgentInfo {
        AgentInfo {
            host_id: vec![0xab; 16],
            boot_id: "b00t".into(),
            hostname: "host-a".into(),
            next_index: 42,
            head_link: vec![1; 32],
            last_segment: Some(3),
            last_segment_digest: vec![2; 32],
            first_segment: Some(1),
            probes: vec![
                ProbeStatus {
                    program: "exec".into(),
                    hook: "sched/sched_process_exec".into(),
                    required: true,
                    attached: true,
                    error: String::new(),
                },
                ProbeStatus {
                    program: "exec_args".into(),
                    hook: "syscalls/sys_enter_execve".into(),
                    required: false,
                    attached: false,
                    error: "verifier said no".into(),
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn failed_probes_show_their_error() {
        let t = text(&info(), Style::PLAIN);
        assert!(
            t.iter().any(|l| l == "probes:      1 of 2 attached"),
            "{t:#?}"
        );
        assert!(
            t.iter()
                .any(|l| l.contains("exec_args") && l.ends_with("FAILED: verifier said no")),
            "{t:#?}"
        );
        assert!(t.iter().any(|l| l.starts_with("segments:    1 to 3")));
        let j = to_json(&info());
        assert_eq!(j["probes"][1]["error"], "verifier said no");
        assert_eq!(j["probes"][0]["error"], serde_json::Value::Null);
        assert_eq!(j["host_id"], "ab".repeat(16));
        assert_eq!(j["last_segment"], 3);
    }
}
