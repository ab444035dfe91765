//! Who may do what. On the Unix socket the file's permissions already decided; on TCP the
//! client certificate (verified by TLS against the configured CA) names the client, and its
//! common name must be on the allow-list for the right the call needs.

use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// GetInfo, ListSegments, PullSegments, AckSegments.
    Pull,
    /// Tail, GetLineage.
    Tail,
}

#[derive(Debug, Clone)]
pub enum Access {
    Local,
    Certificates {
        pull: Vec<String>,
        tail: Vec<String>,
    },
}

impl Access {
    /// The common name of the caller's verified client certificate.
    pub fn common_name<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        common_name(leaf.as_ref())
            .ok_or_else(|| Status::unauthenticated("the client certificate has no common name"))
    }

    pub fn check<T>(&self, request: &Request<T>, right: Right) -> Result<(), Status> {
        let Access::Certificates { pull, tail } = self else {
            return Ok(());
        };
        let name = self.common_name(request)?;
        let allowed = match right {
            Right::Pull => pull,
            Right::Tail => tail,
        };
        if allowed.iter().any(|a| a == "*" || *a == name) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "client {:?} may not {right:?}",
                super::tail::shown(&name, 64)
            )))
        }
    }
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}
