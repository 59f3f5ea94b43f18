//! The HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /healthz` (JSON), on a
//! thread of its own with blocking sockets (no tokio, no hyper, nothing on the loops).
//!
//! Requests are input: a request head is read up to [`MAX_REQUEST_BYTES`] within
//! [`REQUEST_TIMEOUT_MS`]; a malformed one gets 400, an oversized one 431, another method
//! 405, another path 404; with a token configured (`monitoring.token_file`), `/metrics`
//! without `Authorization: Bearer <token>` gets 401 (`/healthz` never asks for it: load
//! balancers probe it without credentials). Every response closes the connection. One
//! request is served at a
//! time (a scrape is a few milliseconds; a client that sends nothing holds the endpoint for
//! at most the timeout), which is what an endpoint meant for loopback or a scraper needs.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::Probe;
use super::health::HealthReport;
use super::prometheus::Exporter;
use super::token::MetricsToken;

/// The largest request head read (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head, and that writing the response may take.
pub const REQUEST_TIMEOUT_MS: u64 = 2000;
/// After the response, unread input is discarded for at most this long...
pub const CLOSE_DRAIN_TIMEOUT_MS: u64 = 200;
/// ...and up to this many bytes, before the socket is closed.
pub const CLOSE_DRAIN_MAX_BYTES: usize = 64 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Health,
}

/// A request refused: its HTTP status and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// The reason, sent as the body.
    pub reason: &'static str,
}

/// The answer to a `/metrics` request without the configured bearer token (sent with
/// `WWW-Authenticate: Bearer`).
pub const UNAUTHORIZED: Refusal = Refusal {
    status: 401,
    reason: "unauthorized: /metrics needs the header Authorization: Bearer <token>",
};

/// A parsed request: the route and whether the body is wanted (`HEAD` does not want it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub route: Route,
    /// `false` for `HEAD`.
    pub body: bool,
}

/// Whether `head` holds a whole request head yet (it ends with an empty line).
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Parses a complete request head.
pub fn parse_request(head: &[u8]) -> Result<Request, Refusal> {
    const BAD: Refusal = Refusal {
        status: 400,
        reason: "malformed request",
    };
    let text = std::str::from_utf8(head).map_err(|_| BAD)?;
    let line = text.lines().next().ok_or(BAD)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(BAD);
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            return Err(Refusal {
                status: 405,
                reason: "only GET and HEAD",
            });
        }
    };
    let path = target.split('?').next().unwrap_or(target);
    let route = match path {
        "/metrics" => Route::Metrics,
        "/healthz" | "/health" => Route::Health,
        _ => {
            return Err(Refusal {
                status: 404,
                reason: "not found: try /metrics or /healthz",
            });
        }
    };
    Ok(Request { route, body })
}

/// `request` if it may be served: a `/metrics` request needs `token` in its `head` when
/// there is one ([`UNAUTHORIZED`] otherwise); `/healthz` is served to anyone.
pub fn authorize(
    request: Request,
    head: &[u8],
    token: Option<&MetricsToken>,
) -> Result<Request, Refusal> {
    match token {
        Some(token) if request.route == Route::Metrics && !token.authorizes(head) => {
            Err(UNAUTHORIZED)
        }
        _ => Ok(request),
    }
}

/// Binds `addr` and serves it on a thread named `starling-http`, `/metrics` only to requests
/// with `token` if there is one; returns the bound address.
pub fn spawn(
    addr: SocketAddr,
    probe: Probe,
    token: Option<MetricsToken>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("starling-http".to_string())
        .spawn(move || serve(&listener, &probe, token.as_ref()))?;
    Ok(bound)
}

fn serve(listener: &TcpListener, probe: &Probe, token: Option<&MetricsToken>) {
    let exporter = Exporter::new();
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(error) = answer(stream, probe, &exporter, token) {
                    tracing::debug!(%error, "metrics request failed");
                }
            }
            Err(error) => {
                // Out of descriptors, most likely: do not spin.
                tracing::warn!(%error, "metrics endpoint: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request from `stream` and answers it.
fn answer(
    mut stream: TcpStream,
    probe: &Probe,
    exporter: &Exporter,
    token: Option<&MetricsToken>,
) -> io::Result<()> {
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let parsed = loop {
        if head_complete(&head) {
            break parse_request(&head).and_then(|request| authorize(request, &head, token));
        }
        if head.len() > MAX_REQUEST_BYTES {
            break Err(Refusal {
                status: 431,
                reason: "request head too large",
            });
        }
        if Instant::now() >= deadline {
            return Ok(()); // too slow: close without a word
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let (status, content_type, body, send_body) = match parsed {
        Ok(Request {
            route: Route::Metrics,
            body,
        }) => {
            let text = exporter.render(&probe.snapshot());
            (200, "text/plain; version=0.0.4; charset=utf-8", text, body)
        }
        Ok(Request {
            route: Route::Health,
            body,
        }) => {
            let report = HealthReport::from_snapshot(&probe.snapshot());
            (
                report.http_status(),
                "application/json",
                report.to_json(),
                body,
            )
        }
        Err(refusal) => {
            tracing::debug!(
                status = refusal.status,
                reason = refusal.reason,
                "metrics endpoint refused a request"
            );
            (
                refusal.status,
                "text/plain; charset=utf-8",
                format!("{}\n", refusal.reason),
                true,
            )
        }
    };
    // RFC 6750: a 401 names the scheme it wants.
    let challenge = if status == UNAUTHORIZED.status {
        "WWW-Authenticate: Bearer realm=\"starling\"\r\n"
    } else {
        ""
    };
    let header = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if send_body {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    // Read what the client still sends before closing: closing with unread input makes the
    // kernel answer with RST, which can destroy the response before the client reads it.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream.set_read_timeout(Some(Duration::from_millis(CLOSE_DRAIN_TIMEOUT_MS)))?;
    let mut drained = 0;
    while drained < CLOSE_DRAIN_MAX_BYTES {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_and_head() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request {
                route: Route::Metrics,
                body: true
            })
        );
        assert_eq!(
            parse_request(b"HEAD /healthz?verbose HTTP/1.0\r\n\r\n"),
            Ok(Request {
                route: Route::Health,
                body: false
            })
        );
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        let status = |head: &[u8]| parse_request(head).map_err(|r| r.status);
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(status(b"GET /admin HTTP/1.1\r\n\r\n"), Err(404));
        assert_eq!(status(b"GET /metrics\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(status(b"GET /metrics SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(status(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(status(b"\r\n\r\n"), Err(400));
    }

    #[test]
    fn only_metrics_asks_for_the_token() {
        let path = std::env::temp_dir().join(format!("starling-http-token-{}", std::process::id()));
        std::fs::write(&path, "t0ken\n").expect("temporary file");
        let token = MetricsToken::read(&path).expect("valid token");
        let _ = std::fs::remove_file(&path);
        let served = |head: &[u8], token: Option<&MetricsToken>| {
            parse_request(head)
                .and_then(|request| authorize(request, head, token))
                .map_err(|r| r.status)
        };
        let bare = b"GET /metrics HTTP/1.1\r\n\r\n";
        let bearer = b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n";
        let wrong = b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer t0ke\r\n\r\n";
        assert!(served(bare, None).is_ok(), "no token configured: open");
        assert_eq!(served(bare, Some(&token)), Err(401));
        assert_eq!(served(wrong, Some(&token)), Err(401));
        assert!(served(bearer, Some(&token)).is_ok());
        assert!(served(b"HEAD /healthz HTTP/1.1\r\n\r\n", Some(&token)).is_ok());
    }

    #[test]
    fn a_head_is_complete_at_its_empty_line() {
        assert!(!head_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
}
