//! Who may connect and what they may touch, as the core applies it: each listener's
//! [`ListenerAccess`] (anonymous clients, whether credentials are verified, its ACL, session
//! takeover), and the per-session checks that rest on it.
//!
//! The core never reads a password file or hashes a password: a CONNECT with credentials on
//! a listener that verifies them is parked (`core::credentials`) while the driver verifies
//! them off the loop. The ACL ([`crate::acl::Acl`]) is pure computation and is asked here:
//!
//! - a PUBLISH is checked for write access, the verdict kept for the session's last topic
//!   (a publisher usually repeats its topics);
//! - a SUBSCRIBE is classified once per filter ([`FilterClass`]): never readable is refused,
//!   always readable costs nothing more, and a filter in between marks the session so that
//!   each delivery's topic is checked (its last verdict kept the same way);
//! - a will is accepted only if its client could publish it.
//!
//! Topics beginning with `$` are the broker's: no client publishes to them, whatever an ACL
//! says (reading `$SYS` is the ACL's to grant).

use std::fmt;
use std::sync::Arc;

use crate::acl::{Access, Acl, FilterClass, Identity};
use crate::core::session::Session;
use crate::core::{ConnId, Shard};

/// The user names a password file knows (for disconnecting the clients of a user removed on
/// reload).
pub trait UserDirectory: Send + Sync {
    /// Whether `username` has an entry.
    fn has_user(&self, username: &str) -> bool;
}

/// Failed logins by source address, kept by the driver: enhanced authentication, which runs
/// on the loop, counts its failures here and is refused early from an address over its
/// limit, as password logins verified off the loop are.
pub trait LoginThrottle: Send + Sync {
    /// Whether logins from `ip` are refused without trying (counted as an early refusal).
    fn throttled(&self, ip: std::net::IpAddr) -> bool;
    /// A login from `ip` failed.
    fn failed(&self, ip: std::net::IpAddr);
}

/// Whether a CONNECT may take over the session of a client id held by another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionTakeover {
    /// Any client may take over any session whose client id it sends (MQTT's own rule).
    #[default]
    Any,
    /// Only a client authenticated as the same user (or, for a session made anonymously,
    /// an anonymous client) may; another is refused with CONNACK 0x05 / 0x87.
    SameUser,
}

/// One listener's access policy.
#[derive(Clone)]
pub struct ListenerAccess {
    /// Whether a client without a user name is accepted.
    pub allow_anonymous: bool,
    /// The users whose credentials are verified (a password file); `None`: a user name is
    /// taken as given, as Mosquitto does without a password file.
    pub users: Option<Arc<dyn UserDirectory>>,
    /// The ACL; `None`: every client may read and write every topic not beginning with `$`
    /// (and read `$SYS`).
    pub acl: Option<Arc<Acl>>,
    /// Session takeover by another user.
    pub session_takeover: SessionTakeover,
    /// Whether the user name is the one the driver read from the client's certificate
    /// ([`Shard::set_identity`]) rather than the CONNECT's, with no password checked.
    pub identity_as_username: bool,
}

impl Default for ListenerAccess {
    /// Open: anonymous clients, no verification, no ACL.
    fn default() -> Self {
        ListenerAccess {
            allow_anonymous: true,
            users: None,
            acl: None,
            session_takeover: SessionTakeover::Any,
            identity_as_username: false,
        }
    }
}

impl fmt::Debug for ListenerAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerAccess")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("verifies_passwords", &self.users.is_some())
            .field("acl_rules", &self.acl.as_ref().map(|a| a.rule_count()))
            .field("session_takeover", &self.session_takeover)
            .field("identity_as_username", &self.identity_as_username)
            .finish()
    }
}

/// The access policy of every listener, by listener index.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    listeners: Vec<ListenerAccess>,
    /// Bumped by the driver at each reload: verdicts remembered under an older generation
    /// are not used.
    pub generation: u64,
}

/// The open policy a listener without one of its own gets (tests, the simulated transport).
static OPEN: std::sync::LazyLock<ListenerAccess> = std::sync::LazyLock::new(Default::default);

impl AccessPolicy {
    /// A policy with `listeners` in listener order.
    pub fn new(listeners: Vec<ListenerAccess>, generation: u64) -> AccessPolicy {
        AccessPolicy {
            listeners,
            generation,
        }
    }

    /// Listener `index`'s policy (the open one if there is none).
    pub fn listener(&self, index: u8) -> &ListenerAccess {
        self.listeners.get(usize::from(index)).unwrap_or(&OPEN)
    }

    /// Whether any listener has an ACL.
    pub fn any_acl(&self) -> bool {
        self.listeners.iter().any(|l| l.acl.is_some())
    }
}

/// What a session remembers of its access checks: the user it authenticated as, and the
/// last topic checked each way with its verdict (kept under the policy generation it was
/// decided in). Allocated only for sessions of a user or on a listener with an ACL.
#[derive(Debug, Default)]
pub struct SessionAccess {
    /// The user name the client authenticated as (or gave, without a password file).
    pub username: Option<Box<str>>,
    /// The last topic published and whether it was writable (the string's buffer is reused
    /// from one verdict to the next).
    last_write: Option<(String, bool)>,
    /// The last topic delivered and whether it was readable.
    last_read: Option<(String, bool)>,
    /// The policy generation of both verdicts.
    generation: u64,
}

impl SessionAccess {
    /// For a session of `username`.
    pub fn new(username: Option<Box<str>>) -> SessionAccess {
        SessionAccess {
            username,
            ..Default::default()
        }
    }

    /// Bytes it holds beside its box.
    pub fn pinned_bytes(&self) -> usize {
        let topic = |t: &Option<(String, bool)>| t.as_ref().map_or(0, |(t, _)| t.capacity());
        self.username.as_ref().map_or(0, |u| u.len())
            + topic(&self.last_write)
            + topic(&self.last_read)
    }
}

/// Whether `topic` is one of the broker's (`$SYS/…`, or any other `$` topic): no client
/// publishes there.
pub fn is_reserved_topic(topic: &str) -> bool {
    topic.starts_with('$')
}

impl Shard {
    /// Installs the listeners' access policy (at start-up, and at each reload: then the
    /// subscriptions of this loop's sessions are classified again, and the clients whose
    /// user is gone are disconnected).
    pub fn set_access(&mut self, policy: AccessPolicy, now_ms: u64) {
        self.access = Arc::new(policy);
        crate::core::credentials::apply_reload(self, now_ms);
    }

    /// The access policy in force.
    pub fn access(&self) -> &AccessPolicy {
        &self.access
    }

    /// Installs the driver's count of failed logins by address (`LoginThrottle`).
    pub fn set_login_throttle(&mut self, throttle: Arc<dyn LoginThrottle>) {
        self.login_throttle = Some(throttle);
    }

    /// Whether logins from `conn`'s address are refused without trying.
    pub(crate) fn login_throttled(&self, conn: ConnId) -> bool {
        match (&self.login_throttle, self.peers.get(conn)) {
            (Some(throttle), Some(peer)) => throttle.throttled(peer.ip()),
            _ => false,
        }
    }

    /// A login of `conn` failed: counted against its address.
    pub(crate) fn login_failed(&self, conn: ConnId) {
        if let (Some(throttle), Some(peer)) = (&self.login_throttle, self.peers.get(conn)) {
            throttle.failed(peer.ip());
        }
    }

    /// Records which listener accepted `conn` (its access policy applies to it).
    pub fn set_listener(&mut self, conn: ConnId, listener: u8) {
        if let Ok(conn) = self.pool.get_mut(conn) {
            conn.listener = listener;
        }
    }

    /// The policy of the listener that accepted `conn`.
    pub(crate) fn listener_access(&self, conn: ConnId) -> &ListenerAccess {
        let listener = self.pool.get(conn).map_or(0, |c| c.listener);
        self.access.listener(listener)
    }
}

/// Whether `session` may publish to `topic` (the ACL of its listener, remembered for its
/// last topic). `$` topics are refused before this is asked.
pub(crate) fn may_write(shard: &mut Shard, session_id: u32, topic: &str) -> bool {
    check(shard, session_id, topic, Access::Write)
}

/// Whether `session` may receive a message on `topic`: asked for every delivery of a
/// session with a subscription classified [`FilterClass::PerTopic`].
pub(crate) fn may_read(shard: &mut Shard, session_id: u32, topic: &str) -> bool {
    let Some(session) = shard.sessions.get(session_id) else {
        return false;
    };
    if !session.acl_checked {
        return true;
    }
    check(shard, session_id, topic, Access::Read)
}

/// The ACL's verdict for one session, topic and access, through the session's memo.
fn check(shard: &mut Shard, session_id: u32, topic: &str, access: Access) -> bool {
    let Shard {
        access: policy,
        sessions,
        ..
    } = shard;
    let Some(session) = sessions.get_mut(session_id) else {
        return false;
    };
    let Some(acl) = policy.listener(session.listener).acl.as_deref() else {
        return true;
    };
    if let Some((last, verdict)) = memo_of(session, policy.generation).slot(access)
        && **last == *topic
    {
        return *verdict;
    }
    let verdict = acl.check(identity(session), topic, access);
    match memo_of(session, policy.generation).slot(access) {
        Some((last, kept)) => {
            last.clear();
            last.push_str(topic);
            *kept = verdict;
        }
        slot => *slot = Some((topic.to_owned(), verdict)),
    }
    verdict
}

/// The session's memo, emptied if it was filled under another policy generation.
fn memo_of(session: &mut Session, generation: u64) -> &mut SessionAccess {
    let memo = session
        .extras_mut()
        .access
        .get_or_insert_with(Default::default);
    if memo.generation != generation {
        // Void, keeping the buffers: an empty topic matches no PUBLISH or delivery.
        for (topic, _) in [&mut memo.last_write, &mut memo.last_read]
            .into_iter()
            .flatten()
        {
            topic.clear();
        }
        memo.generation = generation;
    }
    memo
}

impl SessionAccess {
    /// The last verdict kept for `access`.
    fn slot(&mut self, access: Access) -> &mut Option<(String, bool)> {
        match access {
            Access::Write => &mut self.last_write,
            Access::Read => &mut self.last_read,
        }
    }
}

/// What a subscription of `session` to `filter` needs under its listener's ACL (always
/// allowed without one).
pub(crate) fn classify(shard: &Shard, session_id: u32, filter: &str) -> FilterClass {
    let Some(session) = shard.sessions.get(session_id) else {
        return FilterClass::Never;
    };
    match shard.access.listener(session.listener).acl.as_deref() {
        Some(acl) => acl.classify(identity(session), filter),
        None => FilterClass::Always,
    }
}

/// Whether `username` on listener `listener`'s ACL may publish to `topic` (a will, checked
/// at CONNECT before the session exists).
pub(crate) fn may_write_as(
    shard: &Shard,
    listener: u8,
    username: Option<&str>,
    client_id: &str,
    topic: &str,
) -> bool {
    if is_reserved_topic(topic) {
        return false;
    }
    match shard.access.listener(listener).acl.as_deref() {
        Some(acl) => acl.check(
            Identity {
                username,
                client_id,
            },
            topic,
            Access::Write,
        ),
        None => true,
    }
}

/// The identity a session's checks are made for.
pub(crate) fn identity(session: &Session) -> Identity<'_> {
    Identity {
        username: username(session),
        client_id: &session.client_id,
    }
}

/// The user name a session authenticated as, if any.
pub(crate) fn username(session: &Session) -> Option<&str> {
    session.extras()?.access.as_ref()?.username.as_deref()
}
