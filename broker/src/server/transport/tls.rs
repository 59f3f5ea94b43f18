//! TLS listeners: rustls configurations built from the listener's files, rebuilt at
//! reload, and the certificate facts the logs and metrics show.
//!
//! One [`TlsContext`] per TLS listener, shared by every loop. Its configuration is an
//! `Arc<ServerConfig>` taken by each new handshake; a reload builds a new one from the
//! files and swaps it in (connections already up keep the one they started with, so none
//! is dropped). A file that does not load is refused with its reason and the old
//! configuration stays.
//!
//! - **Crypto provider**: rustls's `ring` provider (see `docs/security.md` for the
//!   measured handshake cost and build time against `aws-lc-rs`).
//! - **Versions**: TLS 1.2 and 1.3 (nothing older).
//! - **Resumption**: TLS 1.3 tickets from a rotating ticketer (its key changes every six
//!   hours, and the previous key is still accepted for as long) and, for TLS 1.2, a
//!   session cache of [`TLS12_SESSION_CACHE_ENTRIES`]. Both outlive reloads.
//! - **ALPN**: `mqtt` is chosen when the client offers it (`http/1.1` on WebSocket
//!   listeners); a client that offers other protocols, or none, is served without ALPN
//!   rather than refused (rustls refuses a client whose offer does not overlap its list, so
//!   each context holds a configuration with the list and one without, chosen per client).
//! - **Client certificates**: checked against `ca_file` (expiry included); optional unless
//!   `require_certificate`. With `use_identity_as_username` the certificate's subject
//!   common name (or, without one, its first DNS or e-mail subject alternative name) is
//!   the client's user name ([`identity`]).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::transport::TlsSettings;

/// TLS 1.2 sessions remembered for resumption per listener (about 200 bytes each).
pub const TLS12_SESSION_CACHE_ENTRIES: usize = 16 * 1024;
/// A certificate expiring within this many days is warned about at start and reload.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// Seconds in a day.
const SECS_PER_DAY: i64 = 86_400;

/// Why a listener's TLS files could not be used.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// What the logs and metrics say about a listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, as `CN=…, O=…`.
    pub subject: String,
    /// When it expires, Unix seconds.
    pub not_after_unix_secs: i64,
}

impl CertificateInfo {
    /// Whole days left before expiry at `now_unix_secs` (negative once expired).
    pub fn days_left(&self, now_unix_secs: i64) -> i64 {
        (self.not_after_unix_secs - now_unix_secs).div_euclid(SECS_PER_DAY)
    }
}

/// The two configurations of one load: with ALPN, for clients that offer our protocol,
/// and without, for the others.
struct Configs {
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    certificate: CertificateInfo,
}

/// One TLS listener's configuration, shared by the loops and replaced at reload.
pub struct TlsContext {
    settings: TlsSettings,
    /// The ALPN protocol this listener chooses when offered.
    alpn: &'static [u8],
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    current: Mutex<Arc<Configs>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("settings", &self.settings)
            .field("certificate", &self.certificate())
            .finish()
    }
}

impl TlsContext {
    /// Loads `settings`' files; `alpn` is the protocol chosen when a client offers it.
    pub fn load(settings: &TlsSettings, alpn: &'static [u8]) -> Result<TlsContext, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError(format!("cannot make a ticket key: {e}")))?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(TLS12_SESSION_CACHE_ENTRIES);
        let configs = build(settings, alpn, &ticketer, &sessions)?;
        Ok(TlsContext {
            settings: settings.clone(),
            alpn,
            ticketer,
            sessions,
            current: Mutex::new(Arc::new(configs)),
        })
    }

    /// Reads the files again and, if they load, uses them for new handshakes. On error the
    /// files in use stay.
    pub fn reload(&self) -> Result<CertificateInfo, TlsError> {
        let configs = build(&self.settings, self.alpn, &self.ticketer, &self.sessions)?;
        let certificate = configs.certificate.clone();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(configs);
        Ok(certificate)
    }

    /// The certificate in use.
    pub fn certificate(&self) -> CertificateInfo {
        self.configs().certificate.clone()
    }

    /// The settings the context was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration for a client whose ALPN offer is `offered` (`None`: no ALPN).
    pub fn config_for<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> Arc<ServerConfig> {
        let configs = self.configs();
        let ours = offered.is_some_and(|mut protocols| protocols.any(|p| p == self.alpn));
        if ours {
            Arc::clone(&configs.with_alpn)
        } else {
            Arc::clone(&configs.without_alpn)
        }
    }

    fn configs(&self) -> Arc<Configs> {
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Builds both configurations from `settings`' files.
fn build(
    settings: &TlsSettings,
    alpn: &[u8],
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
) -> Result<Configs, TlsError> {
    let chain = read_chain(&settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| file_error(&settings.key_file, "no private key read", &e))?;
    let certificate = chain
        .first()
        .map(|c| certificate_info(c.as_ref()))
        .transpose()
        .map_err(|e| TlsError(format!("{}: {e}", settings.cert_file.display())))?
        .ok_or_else(|| {
            TlsError(format!(
                "{}: no certificate in the file",
                settings.cert_file.display()
            ))
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let make = |alpn: Vec<Vec<u8>>| -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
        let builder = match &settings.ca_file {
            Some(ca) => builder.with_client_cert_verifier(client_verifier(
                ca,
                settings.require_certificate,
                &provider,
            )?),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                TlsError(format!(
                    "{} and {}: {e}",
                    settings.cert_file.display(),
                    settings.key_file.display()
                ))
            })?;
        config.ticketer = Arc::clone(ticketer);
        config.session_storage = Arc::clone(sessions);
        config.alpn_protocols = alpn;
        Ok(config)
    };
    Ok(Configs {
        with_alpn: Arc::new(make(vec![alpn.to_vec()])?),
        without_alpn: Arc::new(make(Vec::new())?),
        certificate,
    })
}

/// The certificates of a PEM file, in order.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, "cannot read", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, "not a PEM certificate", &e))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(chain)
}

fn file_error(path: &Path, what: &str, error: &dyn std::fmt::Display) -> TlsError {
    TlsError(format!("{}: {what}: {error}", path.display()))
}

/// Checks client certificates against the CAs in `ca_file`.
fn client_verifier(
    ca_file: &Path,
    required: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in read_chain(ca_file)? {
        roots
            .add(ca)
            .map_err(|e| file_error(ca_file, "not a usable CA certificate", &e))?;
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| file_error(ca_file, "cannot check client certificates", &e))
}

/// The subject and expiry of a DER certificate.
pub fn certificate_info(der: &[u8]) -> Result<CertificateInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        not_after_unix_secs: cert.validity().not_after.timestamp(),
    })
}

/// The user name a client certificate stands for: its subject's common name, or without
/// one its first DNS name or e-mail address among the subject alternative names.
pub fn identity(der: &[u8]) -> Option<Box<str>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
    {
        return Some(cn.into());
    }
    let names = cert.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(n) | GeneralName::RFC822Name(n) if !n.is_empty() => {
                Some((*n).into())
            }
            _ => None,
        })
}

/// Logs a certificate at start or reload: its subject and expiry, with a warning when it
/// expires within [`EXPIRY_WARNING_DAYS`] (or has expired).
pub fn log_certificate(listener: std::net::SocketAddr, info: &CertificateInfo, what: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days_left = info.days_left(now);
    let expires = format_unix_secs(info.not_after_unix_secs);
    if days_left < 0 {
        tracing::error!(%listener, subject = %info.subject, %expires, "TLS certificate {what} has EXPIRED: clients will refuse it");
    } else if days_left < EXPIRY_WARNING_DAYS {
        tracing::warn!(%listener, subject = %info.subject, %expires, days_left, "TLS certificate {what} expires soon");
    } else {
        tracing::info!(%listener, subject = %info.subject, %expires, days_left, "TLS certificate {what}");
    }
}

/// `secs` as a UTC time (`Dec  3 17:52:44 2027 +00:00`, as X.509 tools show it).
fn format_unix_secs(secs: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(secs)
        .map_or_else(|_| format!("@{secs}"), |t| t.to_string())
}
