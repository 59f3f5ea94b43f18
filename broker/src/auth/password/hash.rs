//! One stored password hash: parsing its text (what follows `username:` in a password
//! file), verifying a password against it, and writing a new one.
//!
//! | text | [`PasswordHash`] | verification |
//! | --- | --- | --- |
//! | `$7$<iterations>$<salt>$<hash>` | [`PasswordHash::Pbkdf2Sha512`] | PBKDF2-HMAC-SHA512 (`mosquitto_passwd` 2.0) |
//! | `$6$<salt>$<hash>` | [`PasswordHash::Sha512Salted`] | SHA-512(password ‖ salt) (Mosquitto 1.6 and earlier) |
//! | `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>` | [`PasswordHash::Argon2id`] | Argon2id (a PHC string) |
//! | `$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>` | [`PasswordHash::Scram`] | the SCRAM StoredKey (RFC 5802) |
//!
//! Salts and hashes of the `$7$`, `$6$` and `$scram-sha-256$` forms are standard base64
//! with padding; the PHC string uses the PHC's own unpadded base64.

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash as PhcHash};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::auth::scram::ScramCredentials;

/// Most PBKDF2 iterations a stored `$7$` or `$scram-sha-256$` hash may ask for: a hostile
/// or mistyped file must not make one verification take minutes (10 million SHA-512
/// iterations take a few seconds).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Fewest iterations a stored SCRAM-SHA-256 verifier may have (RFC 7677 §4: at least 4096).
pub const MIN_SCRAM_ITERATIONS: u32 = 4096;

/// Most memory a stored Argon2id hash may ask for, in KiB (256 MiB): verification
/// allocates it.
pub const MAX_ARGON2_M_COST_KIB: u32 = 256 * 1024;

/// Most passes a stored Argon2id hash may ask for.
pub const MAX_ARGON2_T_COST: u32 = 100;

/// Most lanes a stored Argon2id hash may ask for.
pub const MAX_ARGON2_P_COST: u32 = 64;

/// Longest salt accepted in a stored hash, in bytes (Mosquitto writes 12, Starling 12 or 16).
pub const MAX_SALT_BYTES: usize = 256;

/// Iterations `starling passwd` writes for `$7$`: what `mosquitto_passwd` writes, so that
/// Mosquitto reads the file too.
pub const PBKDF2_SHA512_WRITE_ITERATIONS: u32 = 101;

/// Salt length `starling passwd` writes for `$7$`, in bytes (as `mosquitto_passwd`).
pub const PBKDF2_SHA512_SALT_BYTES: usize = 12;

/// Iterations `starling passwd` writes for SCRAM-SHA-256 verifiers.
pub const SCRAM_WRITE_ITERATIONS: u32 = 10_000;

/// Salt length `starling passwd` writes for SCRAM-SHA-256 verifiers and Argon2id hashes,
/// in bytes.
pub const SALT_BYTES: usize = 16;

/// Length of a SHA-512 output (the hash of `$7$` and `$6$`), in bytes.
const SHA512_BYTES: usize = 64;

/// The hash prefixes a password file may use, as error messages list them.
pub const ACCEPTED_PREFIXES: &str = "$7$, $6$, $argon2id$, $scram-sha-256$";

/// A stored password hash. Its `Debug` output names the algorithm and its costs only.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512, as `mosquitto_passwd` 2.0 writes it.
    Pbkdf2Sha512 {
        /// PBKDF2 iterations.
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key: 64 bytes.
        hash: [u8; SHA512_BYTES],
    },
    /// `$6$`: SHA-512(password ‖ salt), as Mosquitto 1.6 and earlier wrote it.
    Sha512Salted {
        /// The salt.
        salt: Vec<u8>,
        /// The digest: 64 bytes.
        hash: [u8; SHA512_BYTES],
    },
    /// A PHC `$argon2id$` string, its costs within this module's limits (boxed: the parsed
    /// string is several times the size of the other variants, and a file holds one entry
    /// per user).
    Argon2id(Box<PhcHash>),
    /// A SCRAM-SHA-256 verifier; it also verifies a plain password (through its StoredKey).
    Scram(ScramCredentials),
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => f
                .debug_struct("Pbkdf2Sha512")
                .field("iterations", iterations)
                .finish_non_exhaustive(),
            PasswordHash::Sha512Salted { .. } => {
                f.debug_struct("Sha512Salted").finish_non_exhaustive()
            }
            PasswordHash::Argon2id(phc) => f
                .debug_tuple("Argon2id")
                .field(&phc.params.as_str())
                .finish(),
            PasswordHash::Scram(scram) => f
                .debug_struct("Scram")
                .field("iterations", &scram.iterations)
                .finish_non_exhaustive(),
        }
    }
}

impl PasswordHash {
    /// Parses a stored hash (the text after `username:`); the error says what is wrong.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        if let Some(rest) = text.strip_prefix("$7$") {
            parse_pbkdf2_sha512(rest)
        } else if let Some(rest) = text.strip_prefix("$6$") {
            parse_sha512_salted(rest)
        } else if text.starts_with("$argon2id$") {
            parse_argon2id(text)
        } else if text.starts_with("$scram-sha-256$") {
            parse_scram(text)
        } else if text.is_empty() {
            Err("empty hash".to_string())
        } else if let Some(rest) = text.strip_prefix('$') {
            let id = rest.split('$').next().unwrap_or_default();
            let shown: String = id.chars().take(32).collect();
            Err(format!(
                "unknown hash format \"${}$\" (accepted: {ACCEPTED_PREFIXES})",
                shown.escape_debug()
            ))
        } else {
            // Not echoed: it may be a plain-text password.
            Err(format!(
                "the hash does not start with '$' (a plain-text password? `starling passwd` \
                 writes hashes; accepted: {ACCEPTED_PREFIXES})"
            ))
        }
    }

    /// Whether `password` matches. Slow on purpose (the hash's own cost, up to the limits
    /// of this module: at most a few seconds); compares in constant time. Keep it off the
    /// event loops.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut derived = [0u8; SHA512_BYTES];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut derived);
                bool::from(derived.ct_eq(hash))
            }
            PasswordHash::Sha512Salted { salt, hash } => {
                let digest = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                bool::from(digest.as_slice().ct_eq(hash))
            }
            PasswordHash::Argon2id(phc) => {
                Argon2::default().verify_password(password, &**phc).is_ok()
            }
            PasswordHash::Scram(scram) => {
                let stored_key = scram_keys(password, &scram.salt, scram.iterations).0;
                bool::from(stored_key.ct_eq(&scram.stored_key))
            }
        }
    }
}

/// What [`hash_password`] writes (`starling passwd --hash`). Argon2id is the default and
/// the strongest; `pbkdf2-sha512` writes what `mosquitto_passwd` writes (`$7$`, 101
/// iterations), so Mosquitto can read the file too; `scram-sha-256` stores a verifier that
/// also serves MQTT 5 SCRAM-SHA-256 authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HashFormat {
    /// `$argon2id$`, with the argon2 crate's default costs (m=19456 KiB, t=2, p=1).
    #[default]
    #[value(name = "argon2id")]
    Argon2id,
    /// `$7$`: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt (as `mosquitto_passwd`).
    #[value(name = "pbkdf2-sha512")]
    Pbkdf2Sha512,
    /// `$scram-sha-256$`: 10 000 iterations, 16-byte salt.
    #[value(name = "scram-sha-256")]
    Scram,
}

/// Why a password could not be hashed: the system's random source failed, or the hasher
/// refused the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashError(pub String);

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HashError {}

/// Hashes `password` in `format` with a fresh random salt: the text to put after
/// `username:`.
pub fn hash_password(password: &[u8], format: HashFormat) -> Result<String, HashError> {
    match format {
        HashFormat::Argon2id => {
            let salt = random_salt::<SALT_BYTES>()?;
            Argon2::default()
                .hash_password_with_salt(password, &salt)
                .map(|phc| phc.to_string())
                .map_err(|e| HashError(format!("argon2id: {e}")))
        }
        HashFormat::Pbkdf2Sha512 => {
            let salt = random_salt::<PBKDF2_SHA512_SALT_BYTES>()?;
            let iterations = PBKDF2_SHA512_WRITE_ITERATIONS;
            let mut hash = [0u8; SHA512_BYTES];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut hash);
            Ok(format!(
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ))
        }
        HashFormat::Scram => {
            let salt = random_salt::<SALT_BYTES>()?;
            Ok(scram_verifier(password, &salt, SCRAM_WRITE_ITERATIONS))
        }
    }
}

/// The SCRAM-SHA-256 verifier of `password`:
/// `$scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>` (standard base64 with
/// padding), the form [`ScramCredentials::parse`] reads.
pub fn scram_verifier(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let (stored_key, server_key) = scram_keys(password, salt, iterations);
    format!(
        "$scram-sha-256${iterations}${}${}${}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

/// StoredKey and ServerKey of RFC 5802 §3 for SHA-256.
fn scram_keys(password: &[u8], salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    (stored_key, hmac_sha256(&salted, b"Server Key"))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: the error arm is never taken.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn random_salt<const N: usize>() -> Result<[u8; N], HashError> {
    let mut salt = [0u8; N];
    getrandom::fill(&mut salt)
        .map_err(|e| HashError(format!("the system's random source failed: {e}")))?;
    Ok(salt)
}

/// `<iterations>$<salt>$<hash>` after `$7$`.
fn parse_pbkdf2_sha512(rest: &str) -> Result<PasswordHash, String> {
    let [iterations, salt, hash] = fields(rest, "$7$<iterations>$<salt>$<hash>")?;
    let iterations = parse_iterations(iterations, 1)?;
    Ok(PasswordHash::Pbkdf2Sha512 {
        iterations,
        salt: decode_salt(salt)?,
        hash: decode_sha512(hash)?,
    })
}

/// `<salt>$<hash>` after `$6$`.
fn parse_sha512_salted(rest: &str) -> Result<PasswordHash, String> {
    let [salt, hash] = fields(rest, "$6$<salt>$<hash>")?;
    Ok(PasswordHash::Sha512Salted {
        salt: decode_salt(salt)?,
        hash: decode_sha512(hash)?,
    })
}

fn parse_argon2id(text: &str) -> Result<PasswordHash, String> {
    let phc = PhcHash::new(text).map_err(|e| format!("malformed $argon2id$ hash: {e}"))?;
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err("malformed $argon2id$ hash: no salt or no hash".to_string());
    }
    let params = argon2::Params::try_from(&phc)
        .map_err(|e| format!("invalid $argon2id$ parameters: {e}"))?;
    let limits = [
        ("m", params.m_cost(), MAX_ARGON2_M_COST_KIB),
        ("t", params.t_cost(), MAX_ARGON2_T_COST),
        ("p", params.p_cost(), MAX_ARGON2_P_COST),
    ];
    for (name, value, max) in limits {
        if value > max {
            return Err(format!("$argon2id$ {name}={value} is above {max}"));
        }
    }
    if let Some(version) = phc.version {
        argon2::Version::try_from(version)
            .map_err(|_| format!("$argon2id$ version v={version} unknown (v=19 or v=16)"))?;
    }
    Ok(PasswordHash::Argon2id(Box::new(phc)))
}

fn parse_scram(text: &str) -> Result<PasswordHash, String> {
    let scram = ScramCredentials::parse(text).ok_or_else(|| {
        "malformed SCRAM-SHA-256 verifier (expected \
         $scram-sha-256$<iterations>$<salt>$<StoredKey>$<ServerKey>)"
            .to_string()
    })?;
    check_iterations(scram.iterations, MIN_SCRAM_ITERATIONS)?;
    check_salt_length(scram.salt.len())?;
    Ok(PasswordHash::Scram(scram))
}

/// Exactly `N` `$`-separated fields.
fn fields<'a, const N: usize>(rest: &'a str, form: &str) -> Result<[&'a str; N], String> {
    let parts: Vec<&str> = rest.split('$').collect();
    <[&str; N]>::try_from(parts.as_slice()).map_err(|_| {
        format!(
            "{} fields where {N} were expected (the form is {form})",
            parts.len()
        )
    })
}

fn parse_iterations(text: &str, min: u32) -> Result<u32, String> {
    let iterations = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().ok()
    } else {
        None
    };
    let iterations = iterations.ok_or_else(|| {
        format!(
            "iteration count \"{}\" is not a number up to {MAX_PBKDF2_ITERATIONS}",
            text.escape_debug()
        )
    })?;
    check_iterations(iterations, min)?;
    Ok(iterations)
}

fn check_iterations(iterations: u32, min: u32) -> Result<(), String> {
    if iterations < min || iterations > MAX_PBKDF2_ITERATIONS {
        return Err(format!(
            "iteration count {iterations} is outside {min}..={MAX_PBKDF2_ITERATIONS}"
        ));
    }
    Ok(())
}

fn decode_salt(text: &str) -> Result<Vec<u8>, String> {
    let salt = BASE64
        .decode(text)
        .map_err(|e| format!("the salt is not base64: {e}"))?;
    check_salt_length(salt.len())?;
    Ok(salt)
}

fn check_salt_length(len: usize) -> Result<(), String> {
    if len == 0 || len > MAX_SALT_BYTES {
        return Err(format!(
            "the salt is {len} bytes long (1 to {MAX_SALT_BYTES} accepted)"
        ));
    }
    Ok(())
}

fn decode_sha512(text: &str) -> Result<[u8; SHA512_BYTES], String> {
    let hash = BASE64
        .decode(text)
        .map_err(|e| format!("the hash is not base64: {e}"))?;
    let len = hash.len();
    <[u8; SHA512_BYTES]>::try_from(hash)
        .map_err(|_| format!("the hash is {len} bytes long ({SHA512_BYTES} expected)"))
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
