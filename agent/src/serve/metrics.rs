//! A Prometheus text endpoint. The capture loop renders a fresh page once per tick; the server
//! only hands out the latest page, so scraping never touches the hot path.
//!
//! Plain HTTP, so it only ever listens on loopback: anything else is refused at config time
//! (put a TLS-terminating proxy in front to export it).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// The latest rendered page, shared with the server task.
#[derive(Clone, Default)]
pub struct Page(Arc<Mutex<String>>);

impl Page {
    pub fn set(&self, text: String) {
        *self.0.lock().expect("metrics page lock") = text;
    }

    fn get(&self) -> String {
        self.0.lock().expect("metrics page lock").clone()
    }
}

/// Builds one exposition-format page.
#[derive(Default)]
pub struct Render(String);

impl Render {
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {value}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
            }
        }
    }

    pub fn finish(self) -> String {
        self.0
    }
}

pub async fn serve(addr: SocketAddr, page: Page) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let body = page.get();
            tokio::spawn(async move {
                // Read the request head (bounded); any path gets the page.
                let mut buf = [0u8; 2048];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf))
                        .await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exposition_format() {
        let mut r = Render::default();
        r.metric(
            "lineage_events_total",
            "counter",
            "Events.",
            &[("kind=\"exec\"", 3.0), ("kind=\"fork\"", 4.0)],
        );
        r.metric("lineage_degraded", "gauge", "Degraded.", &[("", 0.0)]);
        let text = r.finish();
        assert!(text.contains("# TYPE lineage_events_total counter\n"));
        assert!(text.contains("lineage_events_total{kind=\"exec\"} 3\n"));
        assert!(text.contains("lineage_degraded 0\n"));
    }
}
