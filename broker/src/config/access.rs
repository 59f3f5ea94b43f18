//! Who may connect through each listener: `[auth]` and the same keys on a `[[listeners]]`
//! entry (which override `[auth]` for that listener, as Mosquitto's
//! `per_listener_settings` does), resolved with Mosquitto 2.0's safe defaults.
//!
//! - With no password file, a listener on a loopback address admits anonymous clients;
//!   one on any other address refuses to start unless `allow_anonymous = true` is set
//!   explicitly (the error says so).
//! - With a password file, anonymous clients are refused unless `allow_anonymous = true`,
//!   and a client id's session can be taken over only by its own user
//!   (`session_takeover = "same-user"`, the default then).
//!
//! The password and ACL files are read here too, so a file that `--check-config` passes
//! starts, and a broken one is reported with its file, line and what is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::acl::Acl;
use crate::auth::password::PasswordFile;
use crate::core::access::SessionTakeover;

/// `[auth]`, and the keys a listener may override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Whether clients without a user name are admitted.
    pub allow_anonymous: Option<bool>,
    /// Mosquitto's `password_file`: `username:hash` lines.
    pub password_file: Option<PathBuf>,
    /// Mosquitto's `acl_file`.
    pub acl_file: Option<PathBuf>,
    /// Who may take over a client id's session.
    pub session_takeover: Option<TakeoverKey>,
}

/// `session_takeover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TakeoverKey {
    /// Any client that sends the client id (MQTT's own rule).
    Any,
    /// Only a client of the same user.
    SameUser,
}

/// One listener's resolved access settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    /// Whether clients without a user name are admitted.
    pub allow_anonymous: bool,
    /// The password file, if credentials are verified.
    pub password_file: Option<PathBuf>,
    /// The ACL file, if any.
    pub acl_file: Option<PathBuf>,
    /// Who may take over a client id's session.
    pub session_takeover: SessionTakeover,
    /// Whether the client certificate's name is the user name (TLS listeners with
    /// `use_identity_as_username`): such a listener authenticates by certificate.
    pub identity_as_username: bool,
}

impl Default for AccessSettings {
    /// Open: what a loopback listener with nothing configured gets.
    fn default() -> Self {
        AccessSettings {
            allow_anonymous: true,
            password_file: None,
            acl_file: None,
            session_takeover: SessionTakeover::Any,
            identity_as_username: false,
        }
    }
}

/// Resolves a listener's access from its own keys over `[auth]`; the error names the key
/// to blame and why. `identity_as_username`: the listener takes the user name from the
/// client's certificate, which authenticates the client (anonymous clients are refused
/// unless allowed explicitly, and no password file is needed off loopback).
pub fn resolve(
    bind: SocketAddr,
    own: &AuthSection,
    global: &AuthSection,
    identity_as_username: bool,
) -> Result<AccessSettings, (&'static str, String)> {
    let password_file = own
        .password_file
        .clone()
        .or_else(|| global.password_file.clone());
    let acl_file = own.acl_file.clone().or_else(|| global.acl_file.clone());
    let explicit = own.allow_anonymous.or(global.allow_anonymous);
    let allow_anonymous = match (explicit, &password_file) {
        (Some(allow), _) => allow,
        (None, Some(_)) => false,
        (None, None) if identity_as_username => false,
        (None, None) if bind.ip().is_loopback() => true,
        (None, None) => {
            return Err((
                "allow_anonymous",
                format!(
                    "the listener on {bind} is not on a loopback address and no password_file \
                     is configured: set allow_anonymous = true to accept anonymous clients \
                     from the network, or configure a password_file"
                ),
            ));
        }
    };
    let session_takeover = match own.session_takeover.or(global.session_takeover) {
        Some(TakeoverKey::Any) => SessionTakeover::Any,
        Some(TakeoverKey::SameUser) => SessionTakeover::SameUser,
        None if password_file.is_some() => SessionTakeover::SameUser,
        None => SessionTakeover::Any,
    };
    if let Some(path) = &password_file {
        PasswordFile::load(path).map_err(|e| ("password_file", e.to_string()))?;
    }
    if let Some(path) = &acl_file {
        Acl::load(path).map_err(|e| ("acl_file", e.to_string()))?;
    }
    Ok(AccessSettings {
        allow_anonymous,
        password_file,
        acl_file,
        session_takeover,
        identity_as_username,
    })
}

/// The key an error of listener `index` is reported under: the listener's own when it set
/// it, else `[auth]`'s.
pub fn blame(key: &str, index: usize, own: &AuthSection) -> String {
    let set_here = match key {
        "allow_anonymous" => own.allow_anonymous.is_some(),
        "password_file" => own.password_file.is_some(),
        "acl_file" => own.acl_file.is_some(),
        _ => false,
    };
    if set_here {
        format!("listeners[{index}].{key}")
    } else {
        format!("auth.{key}")
    }
}
