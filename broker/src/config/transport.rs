//! What a listener speaks: plain TCP, TLS, WebSocket, or WebSocket over TLS, and the keys
//! each needs (`cert_file`, `key_file`, `ca_file`, `require_certificate`,
//! `use_identity_as_username`; `ws_path`, `ws_allowed_origins`, `ws_max_frame_bytes`).
//!
//! The checks here are the ones that need no file: a TLS listener names its certificate
//! and key; client certificates need a CA; a key that does not apply to the protocol is an
//! error rather than silently ignored. The files themselves are read when the server starts
//! and at every reload (`server::transport::tls`), where a broken one is reported.

use std::path::PathBuf;

use serde::Deserialize;

/// What the default WebSocket frame limit allows beyond `limits.max_packet_size_bytes`, in
/// bytes: a frame may carry a whole MQTT packet of the largest size, and clients batch small
/// packets into one frame.
pub const WS_FRAME_SLACK_BYTES: usize = 4 * 1024;

/// The path a WebSocket upgrade is accepted on unless `ws_path` says otherwise.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// The kinds of listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerProtocol {
    /// Whether connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, ListenerProtocol::Tls | ListenerProtocol::Wss)
    }

    /// Whether connections start with a WebSocket upgrade.
    pub fn websocket(self) -> bool {
        matches!(self, ListenerProtocol::Ws | ListenerProtocol::Wss)
    }

    /// The key's value in the file.
    pub fn name(self) -> &'static str {
        match self {
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "tls",
            ListenerProtocol::Ws => "ws",
            ListenerProtocol::Wss => "wss",
        }
    }
}

/// The transport keys of one `[[listeners]]` entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TransportSection {
    /// PEM: the server's certificate, then the chain up to (not including) the root.
    pub cert_file: Option<PathBuf>,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM: the CAs client certificates are checked against.
    pub ca_file: Option<PathBuf>,
    /// Whether a client must present a certificate the CA signed.
    pub require_certificate: Option<bool>,
    /// Whether the client certificate's name is the client's user name.
    pub use_identity_as_username: Option<bool>,
    /// The path of the WebSocket upgrade.
    pub ws_path: Option<String>,
    /// `Origin` headers admitted (exact match); none: any.
    pub ws_allowed_origins: Option<Vec<String>>,
    /// The largest WebSocket frame payload, in bytes.
    pub ws_max_frame_bytes: Option<usize>,
}

/// A TLS listener's resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CAs for client certificates, if clients may present them.
    pub ca_file: Option<PathBuf>,
    /// Whether a client certificate is required.
    pub require_certificate: bool,
    /// Whether the certificate's name is the user name (see `server::transport::tls`).
    pub use_identity_as_username: bool,
}

/// A WebSocket listener's resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketSettings {
    /// The upgrade's path.
    pub path: String,
    /// `Origin` headers admitted; empty: any.
    pub allowed_origins: Vec<String>,
    /// The largest frame payload, in bytes.
    pub max_frame_bytes: usize,
}

/// What a listener needs beyond its socket: TLS and WebSocket settings, each present only
/// for the protocols that use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportSettings {
    /// For `tls` and `wss`.
    pub tls: Option<TlsSettings>,
    /// For `ws` and `wss`.
    pub websocket: Option<WebSocketSettings>,
}

/// Resolves the transport keys for `protocol`; `max_packet_size_bytes` is the default frame
/// limit's base. The error names the key (without the listener's prefix) and why.
pub fn resolve(
    protocol: ListenerProtocol,
    keys: &TransportSection,
    max_packet_size_bytes: usize,
) -> Result<TransportSettings, (&'static str, String)> {
    let tls = if protocol.tls() {
        Some(resolve_tls(protocol, keys)?)
    } else {
        refuse_keys(protocol, &tls_keys_set(keys))?;
        None
    };
    let websocket = if protocol.websocket() {
        Some(resolve_websocket(keys, max_packet_size_bytes)?)
    } else {
        refuse_keys(protocol, &websocket_keys_set(keys))?;
        None
    };
    Ok(TransportSettings { tls, websocket })
}

fn resolve_tls(
    protocol: ListenerProtocol,
    keys: &TransportSection,
) -> Result<TlsSettings, (&'static str, String)> {
    let needs = |key: &'static str| {
        (
            key,
            format!("a {} listener needs {key} (PEM)", protocol.name()),
        )
    };
    let cert_file = keys.cert_file.clone().ok_or_else(|| needs("cert_file"))?;
    let key_file = keys.key_file.clone().ok_or_else(|| needs("key_file"))?;
    let require_certificate = keys.require_certificate.unwrap_or(false);
    let use_identity_as_username = keys.use_identity_as_username.unwrap_or(false);
    if require_certificate && keys.ca_file.is_none() {
        return Err((
            "require_certificate",
            "client certificates are checked against ca_file: set it".into(),
        ));
    }
    if use_identity_as_username && !require_certificate {
        return Err((
            "use_identity_as_username",
            "the identity comes from a client certificate: set require_certificate = true".into(),
        ));
    }
    Ok(TlsSettings {
        cert_file,
        key_file,
        ca_file: keys.ca_file.clone(),
        require_certificate,
        use_identity_as_username,
    })
}

fn resolve_websocket(
    keys: &TransportSection,
    max_packet_size_bytes: usize,
) -> Result<WebSocketSettings, (&'static str, String)> {
    let path = keys
        .ws_path
        .clone()
        .unwrap_or_else(|| DEFAULT_WS_PATH.to_string());
    if !path.starts_with('/') {
        return Err(("ws_path", format!("`{path}`: a path starts with /")));
    }
    let max_frame_bytes = match keys.ws_max_frame_bytes {
        Some(0) => return Err(("ws_max_frame_bytes", "must be at least 1".into())),
        Some(n) => n,
        // Invariant: the same as the WebSocket layer's `max_message_bytes_for`.
        None => max_packet_size_bytes.saturating_add(WS_FRAME_SLACK_BYTES),
    };
    Ok(WebSocketSettings {
        path,
        allowed_origins: keys.ws_allowed_origins.clone().unwrap_or_default(),
        max_frame_bytes,
    })
}

fn tls_keys_set(keys: &TransportSection) -> Vec<&'static str> {
    [
        ("cert_file", keys.cert_file.is_some()),
        ("key_file", keys.key_file.is_some()),
        ("ca_file", keys.ca_file.is_some()),
        ("require_certificate", keys.require_certificate.is_some()),
        (
            "use_identity_as_username",
            keys.use_identity_as_username.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

fn websocket_keys_set(keys: &TransportSection) -> Vec<&'static str> {
    [
        ("ws_path", keys.ws_path.is_some()),
        ("ws_allowed_origins", keys.ws_allowed_origins.is_some()),
        ("ws_max_frame_bytes", keys.ws_max_frame_bytes.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

/// A key set on a listener whose protocol does not use it.
fn refuse_keys(
    protocol: ListenerProtocol,
    set: &[&'static str],
) -> Result<(), (&'static str, String)> {
    match set.first() {
        Some(&key) => Err((
            key,
            format!(
                "not used by a {} listener (protocol = \"tls\", \"ws\" or \"wss\" uses it)",
                protocol.name()
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_keys() -> TransportSection {
        TransportSection {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            ..TransportSection::default()
        }
    }

    #[test]
    fn tls_needs_a_certificate_and_a_key() {
        let error = resolve(ListenerProtocol::Tls, &TransportSection::default(), 100);
        assert_eq!(error.map_err(|e| e.0), Err("cert_file"));
        let keys = TransportSection {
            key_file: None,
            ..tls_keys()
        };
        let error = resolve(ListenerProtocol::Wss, &keys, 100);
        assert_eq!(error.map_err(|e| e.0), Err("key_file"));
        let settings = resolve(ListenerProtocol::Wss, &tls_keys(), 100);
        assert!(settings.is_ok_and(|s| s.tls.is_some() && s.websocket.is_some()));
    }

    #[test]
    fn client_certificates_need_a_ca_and_identity_needs_them() {
        let keys = TransportSection {
            require_certificate: Some(true),
            ..tls_keys()
        };
        let error = resolve(ListenerProtocol::Tls, &keys, 100);
        assert_eq!(error.map_err(|e| e.0), Err("require_certificate"));
        let keys = TransportSection {
            use_identity_as_username: Some(true),
            ca_file: Some("ca.pem".into()),
            ..tls_keys()
        };
        let error = resolve(ListenerProtocol::Tls, &keys, 100);
        assert_eq!(error.map_err(|e| e.0), Err("use_identity_as_username"));
    }

    #[test]
    fn keys_of_another_protocol_are_refused() {
        let error = resolve(ListenerProtocol::Tcp, &tls_keys(), 100);
        assert_eq!(error.map_err(|e| e.0), Err("cert_file"));
        let keys = TransportSection {
            ws_path: Some("/mqtt".into()),
            ..tls_keys()
        };
        let error = resolve(ListenerProtocol::Tls, &keys, 100);
        assert_eq!(error.map_err(|e| e.0), Err("ws_path"));
    }

    #[test]
    fn websocket_defaults_follow_the_packet_limit() {
        let settings = resolve(ListenerProtocol::Ws, &TransportSection::default(), 1000);
        let ws = settings.ok().and_then(|s| s.websocket);
        assert_eq!(
            ws,
            Some(WebSocketSettings {
                path: DEFAULT_WS_PATH.into(),
                allowed_origins: Vec::new(),
                max_frame_bytes: 1000 + WS_FRAME_SLACK_BYTES,
            })
        );
        let keys = TransportSection {
            ws_path: Some("mqtt".into()),
            ..TransportSection::default()
        };
        let error = resolve(ListenerProtocol::Ws, &keys, 100);
        assert_eq!(error.map_err(|e| e.0), Err("ws_path"));
    }
}
