//! `lineagectl tail`: an agent's live events, one line each.
//!
//! Every line is flushed as soon as it is written: a tail exists to show a process the moment
//! it starts, also through a pipe (`| grep`, `| jq`). Filtering happens on the agent, so a
//! narrow filter also spares the socket.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::Duration;

use lineage_proto::v1::{tail_message, GetInfoRequest, GetLineageRequest, TailFilter, TailRequest};

use crate::cli::TailArgs;
use crate::clock::{self, Clock};
use crate::connect::{self, Client, ConnectError, RpcError};
use crate::event::{self, Event, Names, CHAIN_ANCESTORS};
use crate::exit;
use crate::style::Style;

/// How long to wait for the agent to name a process that started before the tail.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the tail stream from {target} broke: {}", connect::explain(.status))]
    Stream {
        target: String,
        status: tonic::Status,
    },
    #[error("writing to stdout: {0}")]
    Stdout(io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub fn run(a: &TailArgs) -> Result<i32, TailError> {
    connect::runtime()
        .map_err(TailError::Runtime)?
        .block_on(tail(a))
}

fn filter(a: &TailArgs) -> TailFilter {
    TailFilter {
        kinds: a.kind.clone(),
        exec_id_subtree: a.subtree.clone().unwrap_or_default(),
        binary_pattern: a.binary.clone().unwrap_or_default(),
        uid: a.uid,
        cgroup_id: a.cgroup,
        container: a.container.clone().unwrap_or_default(),
    }
}

/// What the human view needs besides the events.
struct View {
    host: String,
    clock: Clock,
    names: Names,
    /// Exec ids the agent could not name; never asked again.
    unknown: HashSet<String>,
    style: Style,
}

async fn tail(a: &TailArgs) -> Result<i32, TailError> {
    let (mut client, target) = connect::connect(&a.conn).await?;
    // The host name and boot id label the lines; a client allowed to tail but not to pull
    // gets the tail without them.
    let info = client
        .get_info(GetInfoRequest {})
        .await
        .map(|r| r.into_inner())
        .ok();
    let mut view = View {
        host: info
            .as_ref()
            .map(|i| i.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "?".into()),
        clock: Clock::for_boot(info.as_ref().map(|i| i.boot_id.as_str())),
        names: Names::default(),
        unknown: HashSet::new(),
        style: Style::for_stdout(),
    };
    let mut stream = client
        .tail(TailRequest {
            filter: Some(filter(a)),
        })
        .await
        .map_err(|s| RpcError::new("Tail", &target, s))?
        .into_inner();
    // The agent has subscribed us before answering: from here on nothing new is missed.
    eprintln!(
        "lineagectl: tailing {} ({target}); Ctrl-C to stop",
        view.host
    );

    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if a.count.is_some_and(|n| printed >= n) {
            return Ok(exit::OK);
        }
        let message = tokio::select! {
            m = stream.message() => m,
            _ = &mut ctrl_c => return Ok(exit::OK),
        };
        let message = match message {
            Ok(Some(m)) => m,
            Ok(None) => {
                eprintln!("lineagectl: the agent ended the stream");
                return Ok(exit::OK);
            }
            Err(status) => {
                return Err(TailError::Stream {
                    target: target.to_string(),
                    status,
                })
            }
        };
        match message.message {
            Some(tail_message::Message::EventJson(json)) => {
                let text = if a.json {
                    json
                } else {
                    human(&json, &mut view, &mut client).await
                };
                if let Err(e) = print_line(&text) {
                    return if e.kind() == io::ErrorKind::BrokenPipe {
                        Ok(exit::OK)
                    } else {
                        Err(TailError::Stdout(e))
                    };
                }
                printed += 1;
            }
            Some(tail_message::Message::Missed(n)) => {
                eprintln!("lineagectl: warning: missed {n} events: this client is too slow");
            }
            None => {}
        }
    }
}

fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// The compact line for one event JSON; an object this CLI cannot read is shown as is.
async fn human(json: &str, view: &mut View, client: &mut Client) -> String {
    let received = clock::wall_now_ns();
    let Ok(ev) = event::parse(json) else {
        return format!("{} {json}", view.host);
    };
    view.clock.observe(ev.time_ns, received);
    view.names.learn(&ev);
    resolve_names(&ev, view, client).await;
    event::line(&ev, &view.host, &view.names, &view.clock, view.style)
}

/// Asks the agent for the names of images in the chain that started before the tail.
/// One GetLineage answer names the whole ancestry, so this is rare after the first lines.
async fn resolve_names(ev: &Event, view: &mut View, client: &mut Client) {
    let wanted = std::iter::once(&ev.exec_id)
        .filter(|id| !id.is_empty())
        .chain(ev.ancestors.iter().take(CHAIN_ANCESTORS));
    let missing: Vec<String> = wanted
        .filter(|id| !view.names.contains(id) && !view.unknown.contains(*id))
        .cloned()
        .collect();
    // The nearest unknown image's lineage names its ancestors too.
    for id in missing {
        if view.names.contains(&id) {
            continue;
        }
        let answer = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            client.get_lineage(GetLineageRequest {
                exec_id: id.clone(),
            }),
        )
        .await;
        match answer {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                for n in r.node.iter().chain(r.ancestors.iter()) {
                    view.names.insert(&n.exec_id, &n.comm);
                }
                if !view.names.contains(&id) {
                    view.unknown.insert(id);
                }
            }
            // Not known to the agent, not allowed, or slow: show `?(tgid)`.
            _ => {
                view.unknown.insert(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn flags_become_the_agent_filter() {
        let cli = crate::cli::Cli::try_parse_from([
            "lineagectl",
            "tail",
            "--kind",
            "exec",
            "--kind",
            "exit",
            "--subtree",
            "b-1-1",
            "--binary",
            "curl",
            "--uid",
            "1000",
            "--cgroup",
            "77",
        ])
        .unwrap();
        let crate::cli::Command::Tail(a) = cli.command else {
            panic!("not tail")
        };
        assert_eq!(
            a.conn.agent,
            connect::Target::Unix(connect::DEFAULT_SOCKET.into()),
            "the default socket"
        );
        let f = filter(&a);
        assert_eq!(f.kinds, ["exec", "exit"]);
        assert_eq!(f.exec_id_subtree, "b-1-1");
        assert_eq!(f.binary_pattern, "curl");
        assert_eq!(f.uid, Some(1000));
        assert_eq!(f.cgroup_id, Some(77));
        assert!(f.container.is_empty());

        assert!(
            crate::cli::Cli::try_parse_from(["lineagectl", "tail", "--kind", "Bogus!"]).is_err()
        );
        assert!(
            crate::cli::Cli::try_parse_from(["lineagectl", "tail", "--agent", "http://h:1"])
                .is_err()
        );
    }
}
