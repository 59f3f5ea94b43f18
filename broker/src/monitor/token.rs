//! The bearer token `GET /metrics` asks for when `monitoring.token_file` is set: read once
//! from its file (surrounding whitespace trimmed), never logged, compared in constant time.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The largest token file read, in bytes (a token is a few dozen bytes; a larger file is
/// most likely the wrong one).
pub const MAX_TOKEN_FILE_BYTES: usize = 4 * 1024;

/// The token and the file it came from. `Debug` shows the path, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken {
    path: PathBuf,
    secret: Arc<[u8]>,
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsToken")
            .field("path", &self.path)
            .field("secret", &"(not shown)")
            .finish()
    }
}

impl MetricsToken {
    /// Reads the token at `path`: refused (with why) if the file cannot be read, holds more
    /// than [`MAX_TOKEN_FILE_BYTES`], is empty once trimmed, or holds a character that
    /// cannot be sent in an HTTP header (only visible ASCII, no spaces).
    pub fn read(path: &Path) -> Result<MetricsToken, String> {
        let shown = path.display();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            // One byte more than allowed, to tell a file at the limit from a longer one
            // (without reading all of a huge file, or of an endless one such as a device).
            .and_then(|file| {
                file.take(MAX_TOKEN_FILE_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(|e| format!("cannot read the token file {shown}: {e}"))?;
        if bytes.len() > MAX_TOKEN_FILE_BYTES {
            return Err(format!(
                "the token file {shown} is longer than {MAX_TOKEN_FILE_BYTES} bytes"
            ));
        }
        let secret = bytes.trim_ascii();
        if secret.is_empty() {
            return Err(format!(
                "the token file {shown} is empty: it must hold the bearer token"
            ));
        }
        if !secret.iter().all(u8::is_ascii_graphic) {
            return Err(format!(
                "the token in {shown} holds a space, a control character or non-ASCII: \
                 a bearer token is visible ASCII only"
            ));
        }
        Ok(MetricsToken {
            path: path.to_path_buf(),
            secret: secret.into(),
        })
    }

    /// The file the token was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the request head `head` carries `Authorization: Bearer <this token>` (the
    /// first `Authorization` header counts). The token is compared in constant time; only
    /// its length can be told from the timing.
    pub fn authorizes(&self, head: &[u8]) -> bool {
        let Some(credentials) = authorization(head) else {
            return false;
        };
        let Some((scheme, token)) = credentials.split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(token.trim_start().as_bytes().ct_eq(&self.secret))
    }
}

/// The value of the first `Authorization` header of `head`, trimmed.
fn authorization(head: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines()
        .skip(1) // the request line
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(name: &str, contents: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("starling-token-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).expect("temporary file");
        path
    }

    fn token(name: &str, contents: &[u8]) -> Result<MetricsToken, String> {
        let path = written(name, contents);
        let read = MetricsToken::read(&path);
        let _ = std::fs::remove_file(&path);
        read
    }

    #[test]
    fn the_file_is_trimmed_and_checked() {
        let t = token("trimmed", b"  s3cret-Token_1\n").expect("valid");
        assert_eq!(&*t.secret, b"s3cret-Token_1");
        assert!(!format!("{t:?}").contains("s3cret"), "never shown");
        let refused = |name: &str, contents: &[u8], why: &str| {
            let error = token(name, contents).expect_err(name);
            assert!(error.contains(why), "{error}");
        };
        refused("empty", b" \n\t\n", "is empty");
        refused("space", b"two words\n", "visible ASCII only");
        refused("utf8", "jeton-\u{e9}".as_bytes(), "visible ASCII only");
        refused(
            "long",
            &vec![b'a'; MAX_TOKEN_FILE_BYTES + 1],
            "longer than 4096 bytes",
        );
        assert!(token("at-limit", &vec![b'a'; MAX_TOKEN_FILE_BYTES]).is_ok());
        let missing =
            MetricsToken::read(Path::new("/nonexistent/starling-token")).expect_err("no such file");
        assert!(missing.contains("cannot read the token file"), "{missing}");
    }

    #[test]
    fn only_the_bearer_token_authorizes() {
        let t = token("authorizes", b"abc.DEF-123\n").expect("valid");
        let head = |auth: &str| format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n");
        assert!(t.authorizes(head("Authorization: Bearer abc.DEF-123").as_bytes()));
        assert!(t.authorizes(head("authorization:bearer  abc.DEF-123 ").as_bytes()));
        for refused in [
            "",
            "Authorization: Bearer abc.DEF-12",
            "Authorization: Bearer abc.DEF-1234",
            "Authorization: Bearer ABC.DEF-123",
            "Authorization: Basic abc.DEF-123",
            "Authorization: abc.DEF-123",
            "Authorization: Bearer",
            "X-Authorization: Bearer abc.DEF-123",
        ] {
            assert!(!t.authorizes(head(refused).as_bytes()), "{refused:?}");
        }
        // A header after the head's end is a body, not a header.
        assert!(!t.authorizes(b"GET /metrics HTTP/1.1\r\n\r\nAuthorization: Bearer abc.DEF-123"));
    }
}
