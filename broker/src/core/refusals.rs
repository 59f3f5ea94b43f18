//! Turning newcomers away at the connection ceilings, and saying so without flooding the log.
//!
//! - [`Refusal`]: why a newcomer was refused or a connection shed, counted per reason.
//! - [`RefusalLog`]: the first refusal of a quiet spell is logged with its details; the
//!   ones that follow are counted per reason and logged as one summary line per
//!   [`REFUSAL_SUMMARY_INTERVAL_MS`], so 20 000 sockets refused in a burst write a few lines.
//! - [`answer`]: what to tell a newcomer the driver holds outside the pool (no object was
//!   free for it): from the first bytes of its CONNECT, the version of the CONNACK 0x03 /
//!   0x97 it can read ([`refusing_connack`]).

use std::fmt::Display;

use crate::protocol::v5::{ConnAckProperties, ConnAckV5, encode_connack_v5};
use crate::protocol::{
    ConnectReturnCode, EncodeError, ProtocolVersion, ReasonCode, encode_connack,
};

/// The interval of the summary line: refusals after the first of a spell are counted and
/// logged together at most this often (per event loop).
pub const REFUSAL_SUMMARY_INTERVAL_MS: u64 = 1000;
/// A reason whose last refusal is at least this old starts a new spell: its next refusal is
/// logged with its details again.
pub const REFUSAL_QUIET_MS: u64 = REFUSAL_SUMMARY_INTERVAL_MS;
/// The most bytes [`answer`] needs: fixed header (1 + 4), protocol name (2 + 6), level.
pub const CONNECT_PREFIX_BYTES: usize = 14;

/// Why a newcomer was turned away, or a connection closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `limits.max_connections` reached: CONNACK 0x03 (MQTT 5: 0x97).
    MaxConnections,
    /// No pool object and no connection to shed: answered by the driver outside the pool.
    PoolLimit,
    /// Out of file descriptors: accepted on the loop's spare descriptor to be answered.
    Descriptors,
    /// The source IP holds `limits.max_connections_per_ip` (closed at accept).
    PerIp,
    /// The listener holds its `max_connections` (closed at accept).
    ListenerFull,
    /// An idle connection that had not sent CONNECT, closed to give its object to a newcomer.
    ShedBeforeConnect,
    /// No CONNECT within `limits.connect_timeout_ms`.
    ConnectTimeout,
    /// A newcomer refused outside the pool that was closed without its CONNACK (no CONNECT
    /// in time, not a CONNECT, or no room to hold it).
    Unanswered,
    /// A connection on a listener with `proxy_protocol` whose first bytes were not a valid
    /// PROXY header (closed by the driver, `server::proxy`).
    ProxyHeader,
}

impl Refusal {
    /// Every reason, in the order of the counts.
    pub const ALL: [Refusal; 9] = [
        Refusal::MaxConnections,
        Refusal::PoolLimit,
        Refusal::Descriptors,
        Refusal::PerIp,
        Refusal::ListenerFull,
        Refusal::ShedBeforeConnect,
        Refusal::ConnectTimeout,
        Refusal::Unanswered,
        Refusal::ProxyHeader,
    ];

    /// The name in logs (the limit's key where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PoolLimit => "pool_limit",
            Refusal::Descriptors => "descriptors",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::ListenerFull => "listener max_connections",
            Refusal::ShedBeforeConnect => "shed_before_connect",
            Refusal::ConnectTimeout => "connect_timeout",
            Refusal::Unanswered => "unanswered",
            Refusal::ProxyHeader => "proxy_protocol",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Counts per reason since the last summary line, and when each reason was last seen.
#[derive(Debug, Default)]
pub struct RefusalLog {
    counts: [u64; Refusal::ALL.len()],
    last_ms: [Option<u64>; Refusal::ALL.len()],
    /// When the pending counts are due to be logged (`None`: nothing pending).
    summary_due_ms: Option<u64>,
}

impl RefusalLog {
    /// Records one refusal. Returns whether it starts a spell (its details are then worth a
    /// line of their own); otherwise it is counted for the next summary line.
    pub fn note(&mut self, refusal: Refusal, now_ms: u64) -> bool {
        let slot = refusal.slot();
        let quiet = self.last_ms[slot].is_none_or(|at| now_ms >= at + REFUSAL_QUIET_MS);
        self.last_ms[slot] = Some(now_ms);
        if quiet {
            return true;
        }
        self.counts[slot] += 1;
        self.summary_due_ms
            .get_or_insert(now_ms + REFUSAL_SUMMARY_INTERVAL_MS);
        false
    }

    /// When [`RefusalLog::flush`] has a line to write.
    pub fn due_ms(&self) -> Option<u64> {
        self.summary_due_ms
    }

    /// Writes the summary line if it is due (or if `force`, when anything is pending).
    pub fn flush(&mut self, loop_index: usize, now_ms: u64, force: bool) {
        let Some(due) = self.summary_due_ms else {
            return;
        };
        if now_ms < due && !force {
            return;
        }
        self.summary_due_ms = None;
        let counts = std::mem::take(&mut self.counts);
        let summary = Refusal::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{}={n}", r.name()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(
            loop_index,
            interval_ms = REFUSAL_SUMMARY_INTERVAL_MS,
            "refused or shed since the last summary: {summary}"
        );
    }
}

/// Logs the details of a refusal that starts a spell ([`RefusalLog::note`]); `who` is the
/// peer address, client id or connection.
pub fn log_first(loop_index: usize, refusal: Refusal, who: &dyn Display) {
    let limit = refusal.name();
    let what = refusal.first_line();
    if refusal.is_warning() {
        tracing::warn!(loop_index, who = %who, limit, "{what}");
    } else {
        tracing::info!(loop_index, who = %who, limit, "{what}");
    }
}

impl Refusal {
    /// What the line of a spell's first refusal says.
    fn first_line(self) -> &'static str {
        match self {
            Refusal::PerIp | Refusal::ListenerFull => "connection refused at accept",
            Refusal::MaxConnections => {
                "CONNECT refused: max_connections reached (CONNACK 0x03 / 0x97)"
            }
            Refusal::PoolLimit => {
                "pool at max_live_objects and no connection to shed: the newcomer is \
                 answered outside the pool (CONNACK 0x03 / 0x97)"
            }
            Refusal::Descriptors => {
                "out of file descriptors: a newcomer accepted on the spare descriptor"
            }
            Refusal::ShedBeforeConnect => {
                "idle connection without CONNECT closed to make room for a newcomer"
            }
            Refusal::ConnectTimeout => "closing connection: connect timeout",
            Refusal::Unanswered => "refused newcomer closed without CONNACK",
            Refusal::ProxyHeader => "closing connection: no valid PROXY protocol header",
        }
    }

    /// Whether it says something is wrong with the broker's sizing (logged as a warning).
    fn is_warning(self) -> bool {
        matches!(self, Refusal::PoolLimit | Refusal::Descriptors)
    }
}

/// What the first bytes of a newcomer's stream allow the driver to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not enough bytes yet to know the protocol version.
    NeedMore,
    /// A CONNECT of this version: answer with [`refusing_connack`].
    Connack(ProtocolVersion),
    /// Not a CONNECT (or not one of a version this broker speaks): close without a word.
    Close,
}

/// Reads the fixed header, protocol name and level of a CONNECT from `prefix` (at most
/// [`CONNECT_PREFIX_BYTES`] are looked at).
pub fn answer(prefix: &[u8]) -> Answer {
    let Some(&first) = prefix.first() else {
        return Answer::NeedMore;
    };
    if first != 0x10 {
        return Answer::Close;
    }
    // Remaining length: 1 to 4 bytes, 7 bits each.
    let mut at = 1;
    loop {
        let Some(&byte) = prefix.get(at) else {
            return Answer::NeedMore;
        };
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return Answer::Close;
        }
    }
    let Some(name_len) = prefix.get(at..at + 2) else {
        return Answer::NeedMore;
    };
    let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
    at += 2;
    if name_len != 4 && name_len != 6 {
        return Answer::Close;
    }
    let (Some(name), Some(&level)) = (prefix.get(at..at + name_len), prefix.get(at + name_len))
    else {
        return Answer::NeedMore;
    };
    match (name, level) {
        (b"MQTT", 5) => Answer::Connack(ProtocolVersion::V5),
        (b"MQTT", 4) => Answer::Connack(ProtocolVersion::V311),
        (b"MQIsdp", 3) => Answer::Connack(ProtocolVersion::V31),
        _ => Answer::Close,
    }
}

/// A refusing CONNACK for `version` with `code` (3.x: the nearest return code, or nothing
/// where 3.x has none: the caller then closes without a CONNACK, §3.2.2.3). Returns whether
/// a packet was written.
pub fn refusing_connack(
    out: &mut Vec<u8>,
    version: ProtocolVersion,
    code: ReasonCode,
    peer_max_packet_size_bytes: usize,
) -> Result<bool, EncodeError> {
    if version == ProtocolVersion::V5 {
        let connack = ConnAckV5 {
            session_present: false,
            reason: code,
            properties: ConnAckProperties::default(),
        };
        return encode_connack_v5(out, &connack, peer_max_packet_size_bytes).map(|_| true);
    }
    match v3_return_code(code) {
        Some(v3) => encode_connack(out, version, false, v3).map(|_| true),
        None => Ok(false),
    }
}

/// Whether 3.x has a CONNACK return code for refusing with `code`.
pub fn has_v3_return_code(code: ReasonCode) -> bool {
    v3_return_code(code).is_some()
}

/// The 3.x return code nearest an MQTT 5 refusal reason, if there is one.
fn v3_return_code(code: ReasonCode) -> Option<ConnectReturnCode> {
    Some(match code {
        ReasonCode::UnsupportedProtocolVersion => ConnectReturnCode::UnacceptableProtocolVersion,
        ReasonCode::ClientIdentifierNotValid => ConnectReturnCode::IdentifierRejected,
        ReasonCode::BadUserNameOrPassword => ConnectReturnCode::BadUsernameOrPassword,
        // Too many failed logins from the address (credentials.rs: 3.x 0x05).
        ReasonCode::NotAuthorized | ReasonCode::ConnectionRateExceeded => {
            ConnectReturnCode::NotAuthorized
        }
        // The credential verifiers saturated (credentials.rs: 3.x 0x03).
        ReasonCode::QuotaExceeded | ReasonCode::ServerUnavailable | ReasonCode::ServerBusy => {
            ConnectReturnCode::ServerUnavailable
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_prefix(name: &[u8], level: u8) -> Vec<u8> {
        let mut bytes = vec![0x10, 0x80, 0x01]; // remaining length 128, two bytes
        bytes.extend_from_slice(&(name.len() as u16).to_be_bytes());
        bytes.extend_from_slice(name);
        bytes.push(level);
        bytes
    }

    #[test]
    fn the_version_is_read_from_the_first_bytes() {
        let v5 = connect_prefix(b"MQTT", 5);
        for cut in 0..v5.len() {
            assert_eq!(answer(&v5[..cut]), Answer::NeedMore, "{cut} bytes");
        }
        assert_eq!(answer(&v5), Answer::Connack(ProtocolVersion::V5));
        assert_eq!(
            answer(&connect_prefix(b"MQTT", 4)),
            Answer::Connack(ProtocolVersion::V311)
        );
        assert_eq!(
            answer(&connect_prefix(b"MQIsdp", 3)),
            Answer::Connack(ProtocolVersion::V31)
        );
        assert_eq!(answer(&connect_prefix(b"MQTT", 9)), Answer::Close);
        assert_eq!(answer(b"GET / HTTP/1.1\r\n"), Answer::Close);
        assert_eq!(answer(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Answer::Close);
        assert_eq!(answer(&[0x10, 0x05, 0x00, 0x03]), Answer::Close);
    }

    #[test]
    fn refusing_connacks_by_version() {
        let mut out = Vec::new();
        let code = ReasonCode::QuotaExceeded;
        assert_eq!(
            refusing_connack(&mut out, ProtocolVersion::V311, code, usize::MAX),
            Ok(true)
        );
        assert_eq!(out, [0x20, 0x02, 0x00, 0x03]);
        out.clear();
        assert_eq!(
            refusing_connack(&mut out, ProtocolVersion::V5, code, usize::MAX),
            Ok(true)
        );
        assert_eq!(out, [0x20, 0x03, 0x00, 0x97, 0x00]);
        out.clear();
        let malformed = ReasonCode::MalformedPacket;
        assert_eq!(
            refusing_connack(&mut out, ProtocolVersion::V311, malformed, usize::MAX),
            Ok(false)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_spell_logs_its_first_refusal_and_counts_the_rest() {
        let mut log = RefusalLog::default();
        assert!(log.note(Refusal::ShedBeforeConnect, 10));
        assert_eq!(log.due_ms(), None, "nothing counted yet");
        for at in 11..111 {
            assert!(!log.note(Refusal::ShedBeforeConnect, at));
        }
        // Another reason starts its own spell.
        assert!(log.note(Refusal::MaxConnections, 50));
        assert_eq!(log.due_ms(), Some(11 + REFUSAL_SUMMARY_INTERVAL_MS));
        log.flush(0, 100, false);
        assert_eq!(
            log.due_ms(),
            Some(11 + REFUSAL_SUMMARY_INTERVAL_MS),
            "not due"
        );
        log.flush(0, 11 + REFUSAL_SUMMARY_INTERVAL_MS, false);
        assert_eq!(log.due_ms(), None);
        // Still within the spell: counted again.
        assert!(!log.note(Refusal::ShedBeforeConnect, 500));
        // After a quiet interval: details again.
        assert!(log.note(Refusal::ShedBeforeConnect, 500 + REFUSAL_QUIET_MS));
    }
}
