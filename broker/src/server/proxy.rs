//! The PROXY protocol (HAProxy's, versions 1 and 2) on the listeners configured for it
//! (`proxy_protocol = true`): a load balancer in front of the broker opens each connection
//! with a header naming the client's address, which is then the address the per-IP limit,
//! the login throttle and the logs see.
//!
//! The driver handles the header before the core sees a byte, so the core stays unaware of
//! it: a socket accepted on such a listener holds a [`ProxyPending`] in its slot until the
//! whole header is in (other sockets pay one empty `Option` for it). The header is parsed
//! with the `ppp` crate; the connect timeout the core armed at accept bounds a header that
//! never completes, and [`MAX_PROXY_HEADER_BYTES`] one that never ends. A malformed header,
//! or bytes that are not a PROXY header, close the connection at once.
//!
//! A version 1 `UNKNOWN` header and a version 2 `LOCAL` one (a health check by the proxy
//! itself), or a version 2 `PROXY` one with no IP addresses (UNIX sockets, unspecified),
//! keep the address of the socket's peer, as the protocol's specification asks.

use std::net::{IpAddr, SocketAddr};

use ppp::PartialResult;
use ppp::{HeaderResult, v1, v2};

use super::admission::Origin;
use super::event_loop::EventLoop;
use crate::core::ConnId;
use crate::core::refusals::Refusal;

/// The longest PROXY header accepted, in bytes: a version 1 header is at most 107 bytes; a
/// version 2 one is 16 bytes and its addresses (at most 36 for IPv6, 216 for UNIX sockets)
/// plus the TLVs a proxy adds (cloud load balancers add an endpoint id of a few dozen
/// bytes; HAProxy, on request, the TLS details). A longer header closes the connection.
pub const MAX_PROXY_HEADER_BYTES: usize = 1024;

/// The fixed part of a version 2 header, in bytes: signature (12), version and command,
/// family and protocol, length (2).
const V2_FIXED_BYTES: usize = 16;

/// What a PROXY header says, once it is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client's address, or `None` to keep the socket's peer (`UNKNOWN`, `LOCAL`, no
    /// IP address).
    pub source: Option<SocketAddr>,
}

/// Why a connection on a PROXY listener is closed before its header is whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// Not a PROXY header, or a malformed one (the parser's reason).
    Malformed(String),
    /// No whole header within [`MAX_PROXY_HEADER_BYTES`].
    TooLong,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Malformed(reason) => write!(f, "not a valid PROXY header: {reason}"),
            ProxyError::TooLong => write!(
                f,
                "no whole PROXY header within {MAX_PROXY_HEADER_BYTES} bytes"
            ),
        }
    }
}

/// One step of reading the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// More bytes are needed.
    More,
    /// The header is whole; the input from `consumed` on is the client's (MQTT).
    Done {
        /// What the header says.
        header: ProxyHeader,
        /// How many bytes of the input just fed were the header's.
        consumed: usize,
    },
    /// Close the connection.
    Invalid(ProxyError),
}

/// A connection on a PROXY listener whose header is not whole yet: the bytes of it read so
/// far (empty until a read stops inside the header).
#[derive(Debug, Default)]
pub struct ProxyPending {
    buffered: Vec<u8>,
}

impl ProxyPending {
    /// Feeds the bytes of one read. Bytes after the header are not kept: with
    /// [`Step::Done`] they are `input[consumed..]`, for the core.
    pub fn feed(&mut self, input: &[u8]) -> Step {
        let before = self.buffered.len();
        let parsed = if before == 0 {
            parse(input)
        } else {
            let room = MAX_PROXY_HEADER_BYTES.saturating_sub(before);
            self.buffered
                .extend_from_slice(&input[..room.min(input.len())]);
            parse(&self.buffered)
        };
        match parsed {
            Parsed::Header { header, len } => {
                self.buffered = Vec::new();
                // The header was not whole with the `before` bytes held, so it ends in `input`.
                Step::Done {
                    header,
                    consumed: len.saturating_sub(before).min(input.len()),
                }
            }
            Parsed::Invalid(error) => Step::Invalid(error),
            Parsed::Incomplete if before == 0 => {
                if input.len() >= MAX_PROXY_HEADER_BYTES {
                    return Step::Invalid(ProxyError::TooLong);
                }
                self.buffered.extend_from_slice(input);
                Step::More
            }
            Parsed::Incomplete => {
                if self.buffered.len() >= MAX_PROXY_HEADER_BYTES {
                    return Step::Invalid(ProxyError::TooLong);
                }
                Step::More
            }
        }
    }
}

impl EventLoop {
    /// Whether `key`'s PROXY header is still to be read.
    pub(super) fn proxy_pending(&self, key: ConnId) -> bool {
        matches!(
            self.conns.get(key.index() as usize),
            Some(Some(slot)) if slot.key == key && slot.proxy.is_some()
        )
    }

    /// Feeds the `read_bytes` just read into the scratch buffer to `key`'s PROXY header.
    /// Once it is whole: the connection counts under the client's address (or is refused
    /// by the per-IP limit and closed), and where the client's own bytes start in the
    /// scratch buffer is returned. `None`: more is needed, or the connection was closed.
    pub(super) fn proxy_header(&mut self, key: ConnId, read_bytes: usize) -> Option<usize> {
        let slot = match self.conns.get_mut(key.index() as usize) {
            Some(Some(slot)) if slot.key == key => slot,
            _ => return None,
        };
        let pending = slot.proxy.as_mut()?;
        let step = pending.feed(self.scratch.get(..read_bytes)?);
        let from = slot.origin;
        match step {
            Step::More => None,
            Step::Invalid(error) => {
                let who = format!("{} ({error})", from.peer());
                self.shard.refused(Refusal::ProxyHeader, self.now_ms, &who);
                self.close(key);
                None
            }
            Step::Done { header, consumed } => {
                slot.proxy = None;
                let Some(source) = header.source else {
                    tracing::debug!(loop_index = self.index, conn = %key, peer = %from.peer(), "PROXY header without a client address: the proxy's is kept");
                    return Some(consumed);
                };
                let to = Origin {
                    ip: source.ip(),
                    port: source.port(),
                    listener: from.listener,
                };
                if let Err(refusal) = self.admission.readmit(from, to) {
                    self.shard.refused(refusal.into(), self.now_ms, &source);
                    self.close(key); // releases what is counted under `from`
                    return None;
                }
                slot.origin = to;
                tracing::debug!(loop_index = self.index, conn = %key, proxy = %from.peer(), peer = %source, "PROXY header read");
                self.shard.note_peer(key, source);
                Some(consumed)
            }
        }
    }
}

/// What the parser made of the bytes so far.
enum Parsed {
    Incomplete,
    Header { header: ProxyHeader, len: usize },
    Invalid(ProxyError),
}

/// Parses a header at the start of `bytes` (version 2 tried first, then version 1).
fn parse(bytes: &[u8]) -> Parsed {
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(header)) => Parsed::Header {
            len: header.header.len(),
            header: ProxyHeader {
                source: match header.addresses {
                    v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    v1::Addresses::Unknown => None,
                },
            },
        },
        HeaderResult::V2(Ok(header)) => Parsed::Header {
            len: header.len(),
            header: ProxyHeader {
                source: match (header.command, header.addresses) {
                    (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                    }
                    (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                    }
                    _ => None,
                },
            },
        },
        HeaderResult::V2(Err(v2::ParseError::Partial(_, length)))
            if V2_FIXED_BYTES + length > MAX_PROXY_HEADER_BYTES =>
        {
            Parsed::Invalid(ProxyError::TooLong)
        }
        HeaderResult::V1(Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong))) => {
            Parsed::Invalid(ProxyError::Malformed(
                "a version 1 header longer than 107 bytes".into(),
            ))
        }
        // A version 1 header cut after a separator ("… 41000 ") reads as an empty field,
        // which the parser takes for an invalid one: before its line ends, only a wrong
        // word or a wrong end of line is final.
        HeaderResult::V1(Err(v1::BinaryParseError::Parse(e)))
            if !bytes.contains(&b'\n')
                && !matches!(
                    e,
                    v1::ParseError::InvalidPrefix
                        | v1::ParseError::InvalidProtocol
                        | v1::ParseError::InvalidSuffix
                ) =>
        {
            Parsed::Incomplete
        }
        result if result.is_incomplete() => Parsed::Incomplete,
        HeaderResult::V1(Err(e)) => Parsed::Invalid(ProxyError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Parsed::Invalid(ProxyError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version 2 signature.
    const SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
    /// The first bytes of an MQTT 3.1.1 CONNECT.
    const CONNECT: &[u8] = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd";

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = SIG.to_vec();
        out.push(0x20 | command);
        out.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    fn v2_ipv4(command: u8) -> Vec<u8> {
        // 203.0.113.7:50000 -> 10.0.0.1:1883, and a TLV (type 0x04, NOOP) of 3 bytes.
        let mut addresses = vec![203, 0, 113, 7, 10, 0, 0, 1];
        addresses.extend_from_slice(&50000u16.to_be_bytes());
        addresses.extend_from_slice(&1883u16.to_be_bytes());
        v2(command, 0x11, &addresses, &[0x04, 0x00, 0x03, 1, 2, 3])
    }

    fn v2_ipv6() -> Vec<u8> {
        let mut addresses = "2001:db8::5"
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.octets().to_vec())
            .unwrap_or_default();
        addresses.extend_from_slice(&[0; 16]);
        addresses.extend_from_slice(&40000u16.to_be_bytes());
        addresses.extend_from_slice(&1883u16.to_be_bytes());
        v2(0x1, 0x21, &addresses, &[])
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        text.parse().ok()
    }

    /// Feeds `header` then a CONNECT in one read; returns the step and the bytes after it.
    fn whole(header: &[u8]) -> (Step, Vec<u8>) {
        let mut input = header.to_vec();
        input.extend_from_slice(CONNECT);
        let step = ProxyPending::default().feed(&input);
        let rest = match &step {
            Step::Done { consumed, .. } => input[*consumed..].to_vec(),
            _ => Vec::new(),
        };
        (step, rest)
    }

    fn source(step: &Step) -> Option<Option<SocketAddr>> {
        match step {
            Step::Done { header, .. } => Some(header.source),
            _ => None,
        }
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let (step, rest) = whole(b"PROXY TCP4 198.51.100.9 10.0.0.1 41000 1883\r\n");
        assert_eq!(source(&step), Some(addr("198.51.100.9:41000")));
        assert_eq!(rest, CONNECT);
        let (step, rest) = whole(b"PROXY TCP6 2001:db8::1 2001:db8::2 41001 1883\r\n");
        assert_eq!(source(&step), Some(addr("[2001:db8::1]:41001")));
        assert_eq!(rest, CONNECT);
        let (step, rest) = whole(b"PROXY UNKNOWN\r\n");
        assert_eq!(source(&step), Some(None));
        assert_eq!(rest, CONNECT);
        let (step, rest) = whole(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
        assert_eq!(source(&step), Some(None));
        assert_eq!(rest, CONNECT);
    }

    #[test]
    fn v2_proxy_and_local() {
        let (step, rest) = whole(&v2_ipv4(0x1));
        assert_eq!(source(&step), Some(addr("203.0.113.7:50000")));
        assert_eq!(rest, CONNECT);
        let (step, rest) = whole(&v2_ipv6());
        assert_eq!(source(&step), Some(addr("[2001:db8::5]:40000")));
        assert_eq!(rest, CONNECT);
        // LOCAL: the proxy's own connection (a health check); its addresses are ignored.
        let (step, rest) = whole(&v2_ipv4(0x0));
        assert_eq!(source(&step), Some(None));
        assert_eq!(rest, CONNECT);
        let (step, rest) = whole(&v2(0x0, 0x00, &[], &[]));
        assert_eq!(source(&step), Some(None));
        assert_eq!(rest, CONNECT);
        // PROXY over a family without IP addresses: the socket's peer is kept.
        let (step, _) = whole(&v2(0x1, 0x00, &[], &[]));
        assert_eq!(source(&step), Some(None));
    }

    /// Every header, fed one byte per read, then the CONNECT in the last read.
    #[test]
    fn split_byte_by_byte() {
        let headers: Vec<(Vec<u8>, Option<SocketAddr>)> = vec![
            (
                b"PROXY TCP4 198.51.100.9 10.0.0.1 41000 1883\r\n".to_vec(),
                addr("198.51.100.9:41000"),
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 41001 1883\r\n".to_vec(),
                addr("[2001:db8::1]:41001"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), None),
            (v2_ipv4(0x1), addr("203.0.113.7:50000")),
            (v2_ipv6(), addr("[2001:db8::5]:40000")),
            (v2_ipv4(0x0), None),
        ];
        for (header, expected) in headers {
            // Every prefix, in one read, waits for more.
            for end in 1..header.len() {
                let step = ProxyPending::default().feed(&header[..end]);
                assert_eq!(step, Step::More, "{:?}", &header[..end]);
            }
            let mut pending = ProxyPending::default();
            let (last, head) = header.split_last().map_or((0, &[][..]), |(l, h)| (*l, h));
            for &byte in head {
                assert_eq!(pending.feed(&[byte]), Step::More, "{header:?}");
            }
            let mut input = vec![last];
            input.extend_from_slice(CONNECT);
            let step = pending.feed(&input);
            assert_eq!(
                ends_before_connect(step, &input),
                (expected, 1),
                "{header:?}"
            );
        }
    }

    /// The source and header bytes of a [`Step::Done`] for `input`, after which the CONNECT
    /// comes whole.
    fn ends_before_connect(step: Step, input: &[u8]) -> (Option<SocketAddr>, usize) {
        match step {
            Step::Done { header, consumed } => {
                assert_eq!(input.get(consumed..), Some(CONNECT));
                (header.source, consumed)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A header split in two reads, the second bringing the rest and the CONNECT.
    #[test]
    fn split_in_two_reads() {
        let header = b"PROXY TCP4 198.51.100.9 10.0.0.1 41000 1883\r\n";
        let mut pending = ProxyPending::default();
        assert_eq!(pending.feed(&header[..20]), Step::More);
        let mut input = header[20..].to_vec();
        input.extend_from_slice(CONNECT);
        let step = pending.feed(&input);
        assert_eq!(
            ends_before_connect(step, &input),
            (addr("198.51.100.9:41000"), header.len() - 20)
        );
    }

    fn invalid(input: &[u8]) -> bool {
        matches!(ProxyPending::default().feed(input), Step::Invalid(_))
    }

    #[test]
    fn no_header_is_refused_at_once() {
        assert!(invalid(CONNECT), "an MQTT CONNECT");
        assert!(invalid(&CONNECT[..1]), "its first byte alone");
        assert!(invalid(b"GET / HTTP/1.1\r\n"));
        assert!(invalid(b"\x16\x03\x01\x02\x00"), "a TLS ClientHello");
        assert!(invalid(b"X"));
    }

    #[test]
    fn malformed_headers() {
        assert!(invalid(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(invalid(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"));
        assert!(invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"));
        assert!(invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"));
        assert!(invalid(b"PROXY TCP4 ::1 ::1 1 2\r\n"));
        assert!(invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"));
        assert!(invalid(b"PROXY TCP9 "));
        let mut bad_version = v2_ipv4(0x1);
        bad_version[12] = 0x31;
        assert!(invalid(&bad_version));
        let mut bad_command = v2_ipv4(0x1);
        bad_command[12] = 0x2F;
        assert!(invalid(&bad_command));
        let mut bad_family = v2_ipv4(0x1);
        bad_family[13] = 0x41;
        assert!(invalid(&bad_family));
        // An IPv4 header too short for its addresses.
        assert!(invalid(&v2(0x1, 0x11, &[1, 2, 3, 4], &[])));
        // Rejected as soon as the first byte that cannot be a header is in.
        let mut pending = ProxyPending::default();
        assert_eq!(pending.feed(b"PROX"), Step::More);
        assert!(matches!(pending.feed(b"Z"), Step::Invalid(_)));
    }

    #[test]
    fn oversize_headers() {
        // Version 1 without its end within 107 bytes.
        let long = format!("PROXY UNKNOWN {}", "a".repeat(120));
        assert!(invalid(long.as_bytes()));
        let mut pending = ProxyPending::default();
        let mut step = Step::More;
        for chunk in long.as_bytes().chunks(10) {
            step = pending.feed(chunk);
            if step != Step::More {
                break;
            }
        }
        assert!(matches!(step, Step::Invalid(_)), "{step:?}");
        // Version 2 declaring more than the bound: refused from its fixed part.
        let tlvs = vec![0u8; MAX_PROXY_HEADER_BYTES];
        let big = v2(0x1, 0x11, &[0; 12], &tlvs);
        assert_eq!(
            ProxyPending::default().feed(&big[..V2_FIXED_BYTES]),
            Step::Invalid(ProxyError::TooLong)
        );
        // Version 2 just within it: accepted.
        let tlvs = vec![0u8; MAX_PROXY_HEADER_BYTES - V2_FIXED_BYTES - 12];
        let fits = v2(0x1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], &tlvs);
        assert_eq!(fits.len(), MAX_PROXY_HEADER_BYTES);
        let mut pending = ProxyPending::default();
        let mut done = None;
        for chunk in fits.chunks(100) {
            match pending.feed(chunk) {
                Step::More => {}
                other => {
                    done = Some(other);
                    break;
                }
            }
        }
        assert_eq!(source(&done.unwrap_or(Step::More)), Some(addr("1.2.3.4:1")));
    }
}
