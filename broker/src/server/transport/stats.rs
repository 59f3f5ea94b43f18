//! Per-listener numbers of the transports: connections accepted, handshakes completed
//! and failed (by reason), how long handshakes took, and the certificate's expiry.
//! Written by the loops with relaxed atomics, read by the metrics endpoint.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::config::ListenerSettings;

/// Upper bounds of the handshake duration histogram's buckets, in microseconds (the last
/// bucket, `+Inf`, is implied).
pub const HANDSHAKE_BUCKETS_US: [u64; 11] = [
    500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// Why a connection's transport failed before MQTT could flow (or, for `closed`, after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The client's certificate is not valid (bad signature, wrong use, malformed).
    BadCertificate,
    /// The client's certificate is signed by no CA the listener trusts.
    UnknownCa,
    /// The client's certificate has expired (or is not valid yet).
    CertificateExpired,
    /// A certificate is required and the client sent none.
    NoCertificate,
    /// The bytes are not TLS (plain MQTT on a TLS port, garbage), or a TLS version or
    /// cipher the listener does not speak.
    ProtocolMismatch,
    /// The client ended the handshake with an alert (it does not trust our certificate).
    AlertReceived,
    /// The handshake or upgrade did not finish within the connect timeout.
    Timeout,
    /// Not a valid WebSocket upgrade request (or the wrong path, or subprotocol).
    BadUpgrade,
    /// An `Origin` not in the listener's allow-list.
    ForbiddenOrigin,
    /// A WebSocket frame the protocol forbids (unmasked, text, too big, bad opcode).
    BadFrame,
    /// Anything else.
    Other,
}

impl Failure {
    /// Every reason, in the order of the counters.
    pub const ALL: [Failure; 11] = [
        Failure::BadCertificate,
        Failure::UnknownCa,
        Failure::CertificateExpired,
        Failure::NoCertificate,
        Failure::ProtocolMismatch,
        Failure::AlertReceived,
        Failure::Timeout,
        Failure::BadUpgrade,
        Failure::ForbiddenOrigin,
        Failure::BadFrame,
        Failure::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::BadCertificate => "bad_certificate",
            Failure::UnknownCa => "unknown_ca",
            Failure::CertificateExpired => "certificate_expired",
            Failure::NoCertificate => "no_certificate",
            Failure::ProtocolMismatch => "protocol_mismatch",
            Failure::AlertReceived => "alert_received",
            Failure::Timeout => "timeout",
            Failure::BadUpgrade => "bad_upgrade",
            Failure::ForbiddenOrigin => "forbidden_origin",
            Failure::BadFrame => "bad_frame",
            Failure::Other => "other",
        }
    }

    fn index(self) -> usize {
        Failure::ALL.iter().position(|&f| f == self).unwrap_or(0)
    }
}

/// One listener's numbers.
#[derive(Debug)]
pub struct ListenerStats {
    /// `IP:PORT`, the label.
    pub name: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub protocol: &'static str,
    accepted: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
    failures: [AtomicU64; Failure::ALL.len()],
    buckets: [AtomicU64; HANDSHAKE_BUCKETS_US.len()],
    handshake_us_total: AtomicU64,
    /// The certificate's expiry (Unix seconds), 0 without one.
    certificate_not_after: AtomicI64,
}

/// A listener's numbers read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Handshakes (TLS, WebSocket upgrade) completed.
    pub handshakes: u64,
    /// Of those, TLS handshakes that resumed a session (ticket or session id).
    pub resumed: u64,
    /// Failures, by [`Failure::ALL`] order.
    pub failures: Vec<(Failure, u64)>,
    /// Handshakes at or under each of [`HANDSHAKE_BUCKETS_US`] (cumulative).
    pub cumulative_buckets: Vec<u64>,
    /// Their total duration, microseconds.
    pub handshake_us_total: u64,
    /// The certificate's expiry, Unix seconds (0: no certificate).
    pub certificate_not_after: i64,
}

impl ListenerStats {
    fn new(settings: &ListenerSettings) -> ListenerStats {
        ListenerStats {
            name: settings.bind.to_string(),
            protocol: settings.protocol.name(),
            accepted: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            handshake_us_total: AtomicU64::new(0),
            certificate_not_after: AtomicI64::new(0),
        }
    }

    /// Counts a connection accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a handshake completed in `micros` (`resumed`: a TLS session resumed).
    pub fn handshake(&self, micros: u64, resumed: bool) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.handshake_us_total.fetch_add(micros, Ordering::Relaxed);
        if let Some(i) = HANDSHAKE_BUCKETS_US.iter().position(|&b| micros <= b)
            && let Some(bucket) = self.buckets.get(i)
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failure.
    pub fn failed(&self, why: Failure) {
        if let Some(counter) = self.failures.get(why.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the certificate's expiry.
    pub fn set_certificate_not_after(&self, unix_secs: i64) {
        self.certificate_not_after
            .store(unix_secs, Ordering::Relaxed);
    }

    /// The numbers now.
    pub fn counts(&self) -> ListenerCounts {
        let mut running = 0;
        let cumulative_buckets = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        ListenerCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            handshakes: self.handshakes.load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            failures: Failure::ALL
                .iter()
                .zip(&self.failures)
                .map(|(&f, c)| (f, c.load(Ordering::Relaxed)))
                .collect(),
            cumulative_buckets,
            handshake_us_total: self.handshake_us_total.load(Ordering::Relaxed),
            certificate_not_after: self.certificate_not_after.load(Ordering::Relaxed),
        }
    }
}

/// Every listener's numbers, by listener index.
#[derive(Debug)]
pub struct TransportStats {
    listeners: Vec<ListenerStats>,
}

impl TransportStats {
    /// Zeroed numbers for `listeners`.
    pub fn new(listeners: &[ListenerSettings]) -> TransportStats {
        TransportStats {
            listeners: listeners.iter().map(ListenerStats::new).collect(),
        }
    }

    /// Listener `index`'s numbers.
    pub fn listener(&self, index: usize) -> Option<&ListenerStats> {
        self.listeners.get(index)
    }

    /// Every listener's.
    pub fn iter(&self) -> impl Iterator<Item = &ListenerStats> {
        self.listeners.iter()
    }
}
