//! The loop's side of authentication: sending a parked CONNECT's credentials to the
//! verifier threads, taking their verdict back, and offering SCRAM-SHA-256 on the listeners
//! that have a password file.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::credentials::Job;
use super::event_loop::EventLoop;
use crate::auth::scram::ScramAuthenticator;
use crate::core::credentials::Verdict;
use crate::core::{Authenticator, ConnId};

impl EventLoop {
    /// [`crate::core::Action::Authenticate`]: queue the verification; a full queue is
    /// answered "server busy" now.
    pub(super) fn authenticate(
        &mut self,
        conn: ConnId,
        listener: u8,
        username: Box<str>,
        password: Vec<u8>,
    ) {
        let ip = self
            .conns
            .get(conn.index() as usize)
            .and_then(Option::as_ref)
            .filter(|slot| slot.key == conn)
            .map(|slot| slot.origin.ip);
        let job = Job {
            loop_index: self.index,
            conn,
            listener,
            username,
            password,
            ip,
            received: Instant::now(),
        };
        if self.credentials.verifier.submit(job).is_err() {
            self.shard
                .credentials_checked(conn, Verdict::Busy, self.now_ms);
        }
    }

    /// A verdict from the verifier threads: the CONNECT goes on or is refused, and the
    /// socket is read again (what arrived meanwhile was left unread).
    pub(super) fn verdict(&mut self, conn: ConnId, verdict: Verdict) {
        self.shard.credentials_checked(conn, verdict, self.now_ms);
        self.act();
        let open = self
            .conns
            .get(conn.index() as usize)
            .and_then(Option::as_ref)
            .is_some_and(|slot| slot.key == conn);
        if open {
            self.read(conn);
        }
    }

    /// Offers SCRAM-SHA-256 on each listener with a password file (against that file as it
    /// is at each exchange), and nothing on the others.
    pub(super) fn install_scram(&mut self) {
        for listener in 0..self.listener_count {
            let Ok(index) = u8::try_from(listener) else {
                break;
            };
            let scram = self.credentials.store.file(index).map(|_| {
                let store = Arc::clone(&self.credentials.store);
                let lookup = move |user: &str| store.file(index)?.scram(user).cloned();
                Rc::new(ScramAuthenticator::new(Arc::new(lookup))) as Rc<dyn Authenticator>
            });
            self.shard.set_listener_authenticator(index, scram);
        }
    }
}
