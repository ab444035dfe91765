//! One line for a gRPC status: what the code means for this API (docs/API.md), then the
//! agent's own message.

use tonic::{Code, Status};

pub fn explain(s: &Status) -> String {
    let what = match s.code() {
        Code::PermissionDenied => {
            "permission denied: this client is not allowed the call (allow-list or acknowledgement identity)"
        }
        Code::Unauthenticated => "not authenticated: the agent requires a client certificate",
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::OutOfRange => "out of range",
        Code::Unavailable => "the agent is unavailable (stopped, or shutting down)",
        Code::DeadlineExceeded => "the agent did not answer in time",
        Code::Unimplemented => "the agent does not offer this call (an older agent?)",
        Code::DataLoss => "the agent's stored data is damaged",
        Code::ResourceExhausted => "the agent is out of resources (too many streams?)",
        Code::Cancelled => "the call was cancelled",
        Code::Internal => "the agent failed internally",
        _ => "the call failed",
    };
    let msg = s.message().trim();
    if msg.is_empty() {
        format!("{what} ({:?})", s.code())
    } else {
        format!("{what}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_explain_themselves() {
        let m = explain(&Status::permission_denied("client \"x\" may not Tail"));
        assert!(m.starts_with("permission denied"), "{m}");
        assert!(m.ends_with("client \"x\" may not Tail"), "{m}");
        assert!(explain(&Status::unauthenticated("")).contains("client certificate"));
        assert_eq!(
            explain(&Status::not_found("no image a-1-2")),
            "not found: no image a-1-2"
        );
        assert_eq!(
            explain(&Status::unavailable("")),
            "the agent is unavailable (stopped, or shutting down) (Unavailable)"
        );
    }
}
