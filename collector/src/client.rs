//! Connecting to an agent's gRPC API through the shared connector (`lineage-client`): over its
//! Unix socket (the agent's default, protected by file permissions) or over TCP with mutual
//! TLS. Plain TCP is not offered.

use lineage_client::{Target, Tls};

use crate::config::Endpoint;

pub use lineage_client::{Client, ConnectError};

/// Opens a channel to `endpoint`, eagerly, so that an absent agent is reported at once. A
/// message larger than `max_message` is refused from its length prefix, before any of it is
/// buffered.
pub async fn connect(endpoint: &Endpoint, max_message: usize) -> Result<Client, ConnectError> {
    let client = match endpoint {
        Endpoint::Unix(path) => lineage_client::connect(&Target::Unix(path.clone()), None).await?,
        Endpoint::Tls {
            url,
            ca_cert,
            client_cert,
            client_key,
            domain,
        } => {
            let target: Target = url.parse().map_err(|e| ConnectError::Transport {
                target: url.clone(),
                detail: format!("{e}"),
            })?;
            let tls = Tls {
                ca: ca_cert.clone(),
                cert: client_cert.clone(),
                key: client_key.clone(),
                domain: domain.clone(),
            };
            lineage_client::connect(&target, Some(&tls)).await?
        }
    };
    Ok(client.max_decoding_message_size(max_message))
}
