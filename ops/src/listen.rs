//! Where plain-HTTP metrics may listen: loopback only. The endpoint has no TLS, and the
//! project's rule is that nothing is served on a network address without it; to export metrics
//! off the host, put a TLS-terminating proxy (or a sidecar scraper) next to the process.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum ListenError {
    NotAddress,
    NotLoopback,
}

impl ListenError {
    /// The reason as a static string, for config errors that carry `&'static str`.
    pub fn reason(self) -> &'static str {
        match self {
            ListenError::NotAddress => "not an IP:port address",
            ListenError::NotLoopback => {
                "plain HTTP is only served on loopback; use a TLS proxy to export it"
            }
        }
    }
}

/// `""` disables the endpoint (`None`); anything else must be a loopback `IP:port`.
pub fn loopback_address(listen: &str) -> Result<Option<SocketAddr>, ListenError> {
    if listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = listen.parse().map_err(|_| ListenError::NotAddress)?;
    if !addr.ip().is_loopback() {
        return Err(ListenError::NotLoopback);
    }
    Ok(Some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        assert_eq!(loopback_address(""), Ok(None));
        assert!(loopback_address("127.0.0.1:9464").unwrap().is_some());
        assert!(loopback_address("[::1]:9464").unwrap().is_some());
        assert_eq!(
            loopback_address("0.0.0.0:9464"),
            Err(ListenError::NotLoopback)
        );
        assert_eq!(
            loopback_address("10.1.2.3:9464"),
            Err(ListenError::NotLoopback)
        );
        assert_eq!(loopback_address("localhost"), Err(ListenError::NotAddress));
    }
}
