//! Reaching an agent from the CLI: `--agent` and the TLS flags handed to the shared connector
//! (`lineage-client`), and failed calls turned into one clear line.

use tonic::Status;

pub use lineage_client::{explain, Client, ConnectError, Target, DEFAULT_SOCKET};

use crate::cli::AgentArgs;

/// A failed call: which call, to whom, and what the status code means here.
#[derive(Debug, thiserror::Error)]
#[error("{call} on {target}: {}", explain(.status))]
pub struct RpcError {
    pub call: &'static str,
    pub target: String,
    pub status: Status,
}

impl RpcError {
    pub fn new(call: &'static str, target: &Target, status: Status) -> Self {
        RpcError {
            call,
            target: target.to_string(),
            status,
        }
    }
}

/// Connects as `--agent`, `--ca`, `--cert`, `--key` and `--domain` say.
pub async fn connect(a: &AgentArgs) -> Result<(Client, Target), ConnectError> {
    let tls = match (&a.ca, &a.cert, &a.key) {
        (None, None, None) if a.domain.is_none() => None,
        (Some(ca), Some(cert), Some(key)) => Some(lineage_client::Tls {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            domain: a.domain.clone(),
        }),
        _ if matches!(a.agent, Target::Unix(_)) => {
            return Err(ConnectError::TlsForUnix(match &a.agent {
                Target::Unix(p) => p.clone(),
                Target::Https { .. } => unreachable!("matched Unix"),
            }))
        }
        _ => return Err(ConnectError::MissingTls),
    };
    let client = lineage_client::connect(&a.agent, tls.as_ref()).await?;
    Ok((client, a.agent.clone()))
}

/// A single-threaded runtime: the CLI does one thing at a time.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_calls_name_call_and_target() {
        let e = RpcError::new(
            "GetLineage",
            &Target::Unix("/s".into()),
            Status::unavailable(""),
        );
        assert_eq!(
            e.to_string(),
            "GetLineage on /s: the agent is unavailable (stopped, or shutting down) (Unavailable)"
        );
    }
}
