//! One SCRAM-SHA-256 exchange, server side: client-first → server-first, client-final →
//! server-final.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use subtle::ConstantTimeEq as _;

use super::message::{self, ClientFirst};
use super::{
    CredentialLookup, DEFAULT_ITERATIONS, FAKE_SALT_BYTES, KEY_BYTES, SERVER_NONCE_BYTES,
    ScramCredentials, hmac, sha256,
};
use crate::core::{AuthExchange, AuthStep};
use crate::protocol::ReasonCode;

/// The refusal of wrong credentials (wrong proof, unknown user).
const WRONG_CREDENTIALS: ReasonCode = ReasonCode::NotAuthorized;

/// The refusal of a malformed or unsupported SCRAM message (see the module documentation).
const MALFORMED: ReasonCode = ReasonCode::UnspecifiedError;

/// One client's SCRAM-SHA-256 exchange (an [`AuthExchange`]).
pub struct ScramExchange {
    lookup: CredentialLookup,
    fixed_nonce: Option<Box<str>>,
    state: State,
}

/// Where the exchange is.
enum State {
    /// Waiting for the client-first-message.
    First,
    /// Server-first sent, waiting for the client-final-message.
    Final(Box<Pending>),
    /// Server-final sent: this user is authenticated.
    Authenticated(Box<str>),
    /// Refused (or stepped after its end): every further step is refused.
    Over,
}

/// What the final step checks, kept from the first.
struct Pending {
    username: Box<str>,
    /// Whether the user exists; if not, `credentials` are made up and the proof is refused.
    known: bool,
    credentials: ScramCredentials,
    /// The GS2 header of the client-first-message.
    gs2_header: Box<str>,
    /// client-first-message-bare, `,`, server-first-message, `,`: the AuthMessage up to
    /// the client-final-message-without-proof.
    auth_message_start: Box<str>,
    /// Client nonce and server nonce.
    nonce: Box<str>,
}

impl ScramExchange {
    /// An exchange against the credentials `lookup` finds, with a random server nonce
    /// unless `fixed_nonce`.
    pub(super) fn new(lookup: CredentialLookup, fixed_nonce: Option<Box<str>>) -> ScramExchange {
        ScramExchange {
            lookup,
            fixed_nonce,
            state: State::First,
        }
    }

    /// client-first-message → the server-first-message and what the final step needs.
    fn first(&self, data: Option<&[u8]>) -> Result<(Box<Pending>, Vec<u8>), ReasonCode> {
        let ClientFirst {
            gs2_header,
            bare,
            username,
            nonce: client_nonce,
        } = data.and_then(message::client_first).ok_or(MALFORMED)?;
        let server_nonce = self.server_nonce().ok_or(MALFORMED)?;
        let (known, credentials) = match (self.lookup)(&username) {
            Some(credentials) => (true, credentials),
            None => (false, unknown_user(&username).ok_or(MALFORMED)?),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credentials.salt),
            credentials.iterations
        );
        let pending = Pending {
            username: username.into(),
            known,
            credentials,
            gs2_header: gs2_header.into(),
            auth_message_start: format!("{bare},{server_first},").into(),
            nonce: nonce.into(),
        };
        Ok((Box::new(pending), server_first.into_bytes()))
    }

    /// A new server nonce: [`SERVER_NONCE_BYTES`] random bytes in base64.
    fn server_nonce(&self) -> Option<String> {
        if let Some(nonce) = &self.fixed_nonce {
            return Some(nonce.to_string());
        }
        let mut bytes = [0; SERVER_NONCE_BYTES];
        getrandom::fill(&mut bytes).ok()?;
        Some(BASE64.encode(bytes))
    }
}

/// client-final-message → the server-final-message, if the proof is right.
fn last(pending: &Pending, data: Option<&[u8]>) -> Result<Vec<u8>, ReasonCode> {
    let last = data.and_then(message::client_final).ok_or(MALFORMED)?;
    if last.channel_binding != pending.gs2_header.as_bytes() || last.nonce != &*pending.nonce {
        return Err(MALFORMED);
    }
    let auth_message = [
        pending.auth_message_start.as_bytes(),
        last.without_proof.as_bytes(),
    ];
    let credentials = &pending.credentials;
    let signature = hmac(&credentials.stored_key, &auth_message);
    let mut client_key = [0; KEY_BYTES];
    for ((key, proof), signature) in client_key.iter_mut().zip(last.proof).zip(signature) {
        *key = proof ^ signature;
    }
    let proof_ok: bool = sha256(&client_key).ct_eq(&credentials.stored_key).into();
    if !(proof_ok && pending.known) {
        return Err(WRONG_CREDENTIALS);
    }
    let server_signature = hmac(&credentials.server_key, &auth_message);
    Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
}

/// Made-up credentials for a user that does not exist, the same at every exchange of this
/// process (so that a client cannot tell it from a real user by asking twice): salt and
/// keys are HMACs of the user name under a per-process random key. `None` if there are no
/// random bytes.
fn unknown_user(username: &str) -> Option<ScramCredentials> {
    static KEY: OnceLock<Option<[u8; KEY_BYTES]>> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0; KEY_BYTES];
        getrandom::fill(&mut key).ok().map(|()| key)
    });
    let key = key.as_ref()?;
    let name = username.as_bytes();
    let salt = hmac(key, &[b"salt\0", name]);
    Some(ScramCredentials {
        iterations: DEFAULT_ITERATIONS,
        salt: salt.get(..FAKE_SALT_BYTES)?.to_vec(),
        stored_key: hmac(key, &[b"stored key\0", name]),
        server_key: hmac(key, &[b"server key\0", name]),
    })
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        match std::mem::replace(&mut self.state, State::Over) {
            State::First => match self.first(data) {
                Ok((pending, server_first)) => {
                    self.state = State::Final(pending);
                    AuthStep::Continue(server_first)
                }
                Err(code) => AuthStep::Refuse(code),
            },
            State::Final(pending) => match last(&pending, data) {
                Ok(server_final) => {
                    self.state = State::Authenticated(pending.username);
                    AuthStep::Success(Some(server_final))
                }
                Err(code) => AuthStep::Refuse(code),
            },
            State::Authenticated(_) | State::Over => AuthStep::Refuse(MALFORMED),
        }
    }

    fn identity(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(username) => Some(username),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::First => "awaiting client-first",
            State::Final(_) => "awaiting client-final",
            State::Authenticated(_) => "authenticated",
            State::Over => "over",
        };
        f.debug_struct("ScramExchange")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
