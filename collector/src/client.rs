//! Connecting to an agent's gRPC API: over its Unix socket (the agent's default, protected by
//! file permissions) or over TCP with mutual TLS (rustls). Plain TCP is not offered.

use lineage_proto::v1::agent_client::AgentClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::config::Endpoint;

/// Connection errors.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file could not be read.
    #[error("{path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The transport failed (socket missing, refused, TLS handshake).
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The generated client over a channel.
pub type Client = AgentClient<Channel>;

/// Opens a channel to `endpoint`. The channel connects eagerly so that an absent agent is
/// reported at once. A message larger than `max_message` is refused from its length prefix,
/// before any of it is buffered.
pub async fn connect(endpoint: &Endpoint, max_message: usize) -> Result<Client, ConnectError> {
    let channel = match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector dials the socket.
            tonic::transport::Endpoint::from_static("http://agent.invalid")
                .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
                .await?
        }
        Endpoint::Tls {
            url,
            ca_cert,
            client_cert,
            client_key,
            domain,
        } => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|source| ConnectError::TlsFile {
                    path: p.to_owned(),
                    source,
                })
            };
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca_cert)?))
                .identity(Identity::from_pem(read(client_cert)?, read(client_key)?));
            if let Some(d) = domain {
                tls = tls.domain_name(d.clone());
            }
            tonic::transport::Endpoint::from_shared(url.clone())?
                .tls_config(tls)?
                .connect()
                .await?
        }
    };
    Ok(AgentClient::new(channel).max_decoding_message_size(max_message))
}
