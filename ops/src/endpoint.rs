//! The HTTP endpoint: `GET /metrics` (the latest page), `GET /healthz` (is the process doing
//! its job), `GET /readyz` (healthy and done starting); any other path is 404, any other
//! method 405.
//!
//! The owner renders the page and judges health on its own schedule and hands both over with
//! [`Endpoint::update`]; serving never touches the owner's state, so a scrape costs the owner
//! nothing. If the owner stops updating (a stuck loop), the page goes stale and both health
//! checks fail, since a frozen process cannot report its own failure.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// A client gets this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_HEAD: usize = 8192;

/// What the owner says about itself: empty lists mean healthy and ready. Each entry is a
/// sentence for the operator ("a sealed segment cannot be written (disk full?)").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Why the process is not doing its job; `/healthz` and `/readyz` fail.
    pub unhealthy: Vec<String>,
    /// Why it is not ready yet (e.g. probes not attached); only `/readyz` fails.
    pub not_ready: Vec<String>,
}

struct State {
    page: String,
    health: Health,
    updated: Option<Instant>,
}

/// Shared between the owner (who updates) and the server (who reads).
#[derive(Clone)]
pub struct Endpoint {
    state: Arc<Mutex<State>>,
    stale_after: Duration,
}

impl Endpoint {
    /// `stale_after`: how long without an update before health checks fail.
    pub fn new(stale_after: Duration) -> Self {
        Endpoint {
            state: Arc::new(Mutex::new(State {
                page: String::new(),
                health: Health {
                    unhealthy: Vec::new(),
                    not_ready: vec!["starting".into()],
                },
                updated: None,
            })),
            stale_after,
        }
    }

    pub fn update(&self, page: String, health: Health) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.page = page;
        s.health = health;
        s.updated = Some(Instant::now());
    }

    /// Status and body for a path.
    fn respond(&self, path: &str) -> (u16, String) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut unhealthy = s.health.unhealthy.clone();
        match s.updated {
            Some(t) if t.elapsed() > self.stale_after => unhealthy.push(format!(
                "no status update for {} s (the main loop is stuck)",
                t.elapsed().as_secs()
            )),
            _ => {}
        }
        let verdict = |problems: Vec<String>| {
            if problems.is_empty() {
                (200, "ok\n".to_owned())
            } else {
                (503, problems.join("\n") + "\n")
            }
        };
        match path {
            "/metrics" if s.updated.is_none() => (503, "starting\n".into()),
            "/metrics" => (200, s.page.clone()),
            "/healthz" => verdict(unhealthy),
            "/readyz" => verdict(
                unhealthy
                    .into_iter()
                    .chain(s.health.not_ready.clone())
                    .collect(),
            ),
            _ => (
                404,
                "not found: this endpoint serves /metrics, /healthz and /readyz\n".into(),
            ),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn handle(mut conn: TcpStream, endpoint: Endpoint) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body, content_type) = match method {
        "GET" | "HEAD" => {
            let (status, body) = endpoint.respond(path);
            let ct = if path == "/metrics" && status == 200 {
                "text/plain; version=0.0.4; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, body, ct)
        }
        "" => (400, "bad request\n".into(), "text/plain; charset=utf-8"),
        _ => (
            405,
            "only GET and HEAD\n".into(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    let _ = conn.write_all(out.as_bytes()).await;
    let _ = conn.shutdown().await;
}

/// Binds `addr` and serves in a background task of the current runtime. The bind error is
/// returned, so the caller decides whether a taken port matters.
pub async fn serve(addr: SocketAddr, endpoint: Endpoint) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics endpoint listening (/metrics, /healthz, /readyz)");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                handle(conn, endpoint).await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes_and_health() {
        let e = Endpoint::new(Duration::from_secs(60));
        let addr = serve("127.0.0.1:0".parse().unwrap(), e.clone())
            .await
            .unwrap();
        for path in ["/readyz", "/metrics"] {
            let r = get(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
            assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
            assert!(r.ends_with("starting\n"), "{r}");
        }

        e.update("x_up 1\n".into(), Health::default());
        let r = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            r.starts_with("HTTP/1.1 200 ") && r.ends_with("\r\n\r\nx_up 1\n"),
            "{r}"
        );
        let r = get(addr, "GET /healthz?verbose HTTP/1.0\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 ") && r.ends_with("ok\n"), "{r}");
        let r = get(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        for path in ["/", "/foo", "/metrics/x", "/healthz/"] {
            let r = get(addr, &format!("GET {path} HTTP/1.1\r\n\r\n")).await;
            assert!(r.starts_with("HTTP/1.1 404 "), "{path}: {r}");
        }
        let r = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");

        e.update(
            "x_up 0\n".into(),
            Health {
                unhealthy: vec!["disk full".into()],
                not_ready: vec![],
            },
        );
        for path in ["/healthz", "/readyz"] {
            let r = get(addr, &format!("GET {path} HTTP/1.1\r\n\r\n")).await;
            assert!(
                r.starts_with("HTTP/1.1 503 ") && r.ends_with("disk full\n"),
                "{r}"
            );
        }
        e.update(
            String::new(),
            Health {
                unhealthy: vec![],
                not_ready: vec!["probes".into()],
            },
        );
        assert!(get(addr, "GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200 "));
        assert!(get(addr, "GET /readyz HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 503 "));
    }

    #[test]
    fn a_stale_page_is_unhealthy() {
        let e = Endpoint::new(Duration::from_millis(1));
        e.update(String::new(), Health::default());
        std::thread::sleep(Duration::from_millis(20));
        let (status, body) = e.respond("/healthz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("stuck"), "{body}");
    }
}
