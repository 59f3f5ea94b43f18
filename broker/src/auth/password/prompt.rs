//! Reading a password for `starling passwd`: from the terminal twice, without echo, when
//! standard input is one; otherwise one line of standard input (so scripts and tests can
//! pipe it in). Prompts go to standard error.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::mem::MaybeUninit;

use super::edit::MAX_PASSWORD_BYTES;

/// The password, without its line ending. On a terminal it is asked for twice and the two
/// must match.
pub fn read_password() -> Result<Vec<u8>, String> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return read_line(&mut stdin.lock())
            .map_err(|e| format!("cannot read the password from standard input: {e}"));
    }
    let first = prompt("Password: ")?;
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err("the passwords do not match".to_string());
    }
    Ok(first)
}

/// Writes `text` to standard error and reads a line from the terminal with echo off.
fn prompt(text: &str) -> Result<Vec<u8>, String> {
    let mut stderr = io::stderr();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
    let line = {
        let _echo_off = EchoOff::new(libc::STDIN_FILENO)
            .map_err(|e| format!("cannot turn off the terminal's echo: {e}"))?;
        read_line(&mut io::stdin().lock())
    };
    // The Enter the user typed was not echoed.
    let _ = stderr.write_all(b"\n");
    line.map_err(|e| format!("cannot read the password: {e}"))
}

/// One line of `input` without its `\n` or `\r\n`; an error at end of input with nothing
/// read, or past [`MAX_PASSWORD_BYTES`].
pub(crate) fn read_line(input: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // The line ending and one byte more than allowed, to tell a long line.
    let limit = MAX_PASSWORD_BYTES as u64 + 3;
    let read = input.take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "end of input before a password",
        ));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the password is longer than {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(line)
}

/// The terminal's echo turned off until dropped, which restores the saved settings.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> io::Result<EchoOff> {
        let mut saved = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: `saved` points to writable memory the size of a `termios`; tcgetattr
        // only writes there, and fills it whole when it returns 0.
        if unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: tcgetattr returned 0 above, so it initialised the whole struct.
        let saved = unsafe { saved.assume_init() };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `quiet` is a valid, initialised termios read by tcsetattr only.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: `self.saved` is the initialised termios tcgetattr filled for `self.fd`;
        // tcsetattr only reads it.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_loses_its_line_ending_only() {
        let mut input: &[u8] = b"s3cret \r\nnext\n";
        assert_eq!(read_line(&mut input).expect("line"), b"s3cret ");
        let mut input: &[u8] = b"no newline";
        assert_eq!(read_line(&mut input).expect("line"), b"no newline");
        let mut input: &[u8] = b"";
        assert!(read_line(&mut input).is_err());
    }

    #[test]
    fn an_overlong_line_is_refused() {
        let long = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        assert!(read_line(&mut long.as_slice()).is_err());
        let longest = vec![b'x'; MAX_PASSWORD_BYTES];
        assert_eq!(
            read_line(&mut longest.as_slice()).expect("line").len(),
            MAX_PASSWORD_BYTES
        );
    }
}
