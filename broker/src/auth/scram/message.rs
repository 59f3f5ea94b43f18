//! The client's SCRAM messages (RFC 5802 §7), parsed without panicking on any input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{KEY_BYTES, MAX_SCRAM_MESSAGE_BYTES};

/// A client-first-message: `gs2-header client-first-message-bare`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClientFirst<'a> {
    /// `n,,`, `y,,` or `n,a=<authzid>,` (with its last comma), as the client sent it: the
    /// client-final-message's channel binding must be its base64.
    pub gs2_header: &'a str,
    /// `n=<user>,r=<nonce>[,extensions]`: the first part of the AuthMessage.
    pub bare: &'a str,
    /// The user name, `=2C` and `=3D` decoded.
    pub username: String,
    /// The client nonce.
    pub nonce: &'a str,
}

/// A client-final-message: `c=<base64>,r=<nonce>[,extensions],p=<base64 proof>`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClientFinal<'a> {
    /// Everything before `,p=`: the last part of the AuthMessage.
    pub without_proof: &'a str,
    /// The channel binding, base64-decoded (the GS2 header, with no channel binding data).
    pub channel_binding: Vec<u8>,
    /// The nonce: the client's and the server's.
    pub nonce: &'a str,
    /// ClientKey XOR ClientSignature.
    pub proof: [u8; KEY_BYTES],
}

/// The message as text: at most [`MAX_SCRAM_MESSAGE_BYTES`] of UTF-8.
fn text(data: &[u8]) -> Option<&str> {
    if data.len() > MAX_SCRAM_MESSAGE_BYTES {
        return None;
    }
    std::str::from_utf8(data).ok()
}

/// Parses a client-first-message; `None` if it is malformed or asks for what this server
/// refuses (channel binding, another authorization identity, a mandatory extension).
pub(super) fn client_first(data: &[u8]) -> Option<ClientFirst<'_>> {
    let message = text(data)?;
    let (flag, rest) = message.split_once(',')?;
    // `p=<name>`: the client requires channel binding, which this server does not offer.
    if flag != "n" && flag != "y" {
        return None;
    }
    let (authzid, bare) = rest.split_once(',')?;
    let gs2_header = message.get(..message.len() - bare.len())?;
    let mut fields = bare.split(',');
    // `m=` first would be a mandatory extension: not supported, so refused.
    let username = saslname(fields.next()?.strip_prefix("n=")?)?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if !is_nonce(nonce) || !fields.all(is_extension) {
        return None;
    }
    if !authzid.is_empty() && saslname(authzid.strip_prefix("a=")?)? != username {
        return None;
    }
    Some(ClientFirst {
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// Parses a client-final-message; `None` if it is malformed. Whether its channel binding
/// and nonce match the exchange is for the caller to check.
pub(super) fn client_final(data: &[u8]) -> Option<ClientFinal<'_>> {
    let message = text(data)?;
    // base64 has no `,`: the proof is after the last one.
    let (without_proof, proof) = message.rsplit_once(',')?;
    let proof = BASE64
        .decode(proof.strip_prefix("p=")?)
        .ok()?
        .try_into()
        .ok()?;
    let mut fields = without_proof.split(',');
    let channel_binding = BASE64.decode(fields.next()?.strip_prefix("c=")?).ok()?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    if !is_nonce(nonce) || !fields.all(is_extension) {
        return None;
    }
    Some(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// A `saslname` decoded: `=2C` is `,`, `=3D` is `=`, any other `=` is an error. `None`
/// also for an empty name or one with control characters (which SASLprep prohibits).
fn saslname(encoded: &str) -> Option<String> {
    let mut name = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some((before, after)) = rest.split_once('=') {
        name.push_str(before);
        if let Some(after) = after.strip_prefix("2C") {
            name.push(',');
            rest = after;
        } else if let Some(after) = after.strip_prefix("3D") {
            name.push('=');
            rest = after;
        } else {
            return None;
        }
    }
    name.push_str(rest);
    (!name.is_empty() && !name.chars().any(char::is_control)).then_some(name)
}

/// A nonce: one or more printable ASCII characters other than `,` (RFC 5802 §7).
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2B | 0x2D..=0x7E))
}

/// An extension `<letter>=<value>` (RFC 5802 §7 `attr-val`), ignored once checked.
fn is_extension(field: &str) -> bool {
    let mut bytes = field.bytes();
    matches!(
        (bytes.next(), bytes.next(), bytes.next()),
        (Some(attr), Some(b'='), Some(_)) if attr.is_ascii_alphabetic()
    )
}
