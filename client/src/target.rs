//! Where an agent is: a Unix socket path (`/run/lineage/agent.sock`, `unix:///…`, `unix:…`)
//! or `https://host:port`. Plain TCP is refused here because the agent never serves it: a
//! clear error now beats an obscure handshake failure later.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `https://host:port`; `host` is the TLS server name unless `--domain` overrides it.
    Https { url: String, host: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0:?}: plain TCP is not offered by the agent; use https://HOST:PORT with --ca, --cert and --key")]
    PlainTcp(String),
    #[error("{0:?}: unknown scheme; use a socket path, unix:///PATH or https://HOST:PORT")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: a unix:// target needs an absolute path (unix:///run/lineage/agent.sock)")]
    RelativeUnix(String),
    #[error("an empty --agent target")]
    Empty,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(rest) = s.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(TargetError::RelativeUnix(s.into()));
            }
            return Ok(Target::Unix(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            return Ok(Target::Unix(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = if let Some(v6) = authority.strip_prefix('[') {
                v6.split(']').next().unwrap_or_default()
            } else {
                authority.split(':').next().unwrap_or_default()
            };
            if host.is_empty() {
                return Err(TargetError::NoHost(s.into()));
            }
            return Ok(Target::Https {
                url: s.into(),
                host: host.into(),
            });
        }
        if s.starts_with("http://") || s.starts_with("tcp://") || s.starts_with("grpc://") {
            return Err(TargetError::PlainTcp(s.into()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.contains('/') {
                return Err(TargetError::Scheme(s.into()));
            }
        }
        Ok(Target::Unix(s.into()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Https { url, .. } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, TargetError> {
        s.parse()
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            t("/run/lineage/agent.sock"),
            Ok(Target::Unix("/run/lineage/agent.sock".into()))
        );
        assert_eq!(t("agent.sock"), Ok(Target::Unix("agent.sock".into())));
        assert_eq!(
            t("unix:///tmp/a.sock"),
            Ok(Target::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            t("unix:/tmp/a.sock"),
            Ok(Target::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            t("unix://tmp/a.sock"),
            Err(TargetError::RelativeUnix("unix://tmp/a.sock".into()))
        );
        assert_eq!(
            t("https://agent-1.example:7443"),
            Ok(Target::Https {
                url: "https://agent-1.example:7443".into(),
                host: "agent-1.example".into()
            })
        );
        assert_eq!(
            t("https://[::1]:7443"),
            Ok(Target::Https {
                url: "https://[::1]:7443".into(),
                host: "::1".into()
            })
        );
        assert!(matches!(t("http://h:1"), Err(TargetError::PlainTcp(_))));
        assert!(matches!(t("tcp://h:1"), Err(TargetError::PlainTcp(_))));
        assert!(matches!(t("ftp://h"), Err(TargetError::Scheme(_))));
        assert!(matches!(t("https://:7443"), Err(TargetError::NoHost(_))));
        assert_eq!(t(" "), Err(TargetError::Empty));
        // A relative path that happens to contain "://" after a slash is still a path.
        assert_eq!(t("./a://b"), Ok(Target::Unix("./a://b".into())));
    }
}
