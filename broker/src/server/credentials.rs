//! Verifying passwords off the event loops, and loading what the access policy rests on.
//!
//! A loop that parks a CONNECT ([`crate::core::Action::Authenticate`]) hands the credentials
//! to the [`Verifier`]: [`VERIFIER_THREADS`] threads beside the loops, fed by a bounded
//! queue ([`MAX_PENDING_VERIFICATIONS`]; when it is full the CONNECT is answered "server
//! busy" at once). A verdict goes back to the loop through its mailbox.
//!
//! - **Remembered logins.** A successful verification is remembered by listener, user name
//!   and a keyed hash of the password (HMAC-SHA-256 under a key drawn at start, so the
//!   memory holds nothing a password can be recovered from cheaply) until the password file
//!   changes: a reconnect storm of known clients costs a hash each, not a key derivation.
//! - **Failures** are answered [`FAILURE_DELAY_MS`] after the CONNECT arrived, whatever the
//!   cause (unknown user, wrong password): the answer's timing tells nothing, and a client
//!   guessing passwords gets one guess per delay per connection.
//! - **Throttling.** After [`MAX_FAILURES_PER_WINDOW`] failures from one source address
//!   within [`FAILURE_WINDOW_MS`], that address's logins are refused without verifying
//!   until the window ends; failures and early refusals are logged as one summary line per
//!   [`FAILURE_SUMMARY_INTERVAL_MS`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::mailbox::{Inbound, Peers};
use crate::acl::Acl;
use crate::auth::password::PasswordFile;
use crate::config::ListenerSettings;
use crate::core::ConnId;
use crate::core::access::{AccessPolicy, ListenerAccess, UserDirectory};
use crate::core::credentials::Verdict;

/// Threads verifying passwords (key derivation is slow on purpose: a few of these, never
/// the loops).
pub const VERIFIER_THREADS: usize = 2;
/// Verifications waiting at most; past this a CONNECT is answered "server busy".
pub const MAX_PENDING_VERIFICATIONS: usize = 1024;
/// How long after its CONNECT a failed login is answered.
pub const FAILURE_DELAY_MS: u64 = 1000;
/// The window failures from one source address are counted in.
pub const FAILURE_WINDOW_MS: u64 = 60_000;
/// Failures from one source address within a window after which its logins are refused
/// without verifying until the window ends.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// Source addresses tracked at most (the table is cleared when full).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;
/// Successful logins remembered at most (the table is cleared when full).
pub const MAX_REMEMBERED_LOGINS: usize = 65_536;
/// How often failures and early refusals are logged, as one summary line.
pub const FAILURE_SUMMARY_INTERVAL_MS: u64 = 10_000;

impl UserDirectory for PasswordFile {
    fn has_user(&self, username: &str) -> bool {
        self.get(username).is_some()
    }
}

/// The password files in force, by listener (swapped whole at a reload).
#[derive(Default)]
pub struct CredentialStore {
    files: RwLock<Files>,
}

/// One generation of password files.
#[derive(Default, Clone)]
struct Files {
    generation: u64,
    by_listener: Vec<Option<Arc<PasswordFile>>>,
}

impl CredentialStore {
    /// Listener `listener`'s password file, if it has one.
    pub fn file(&self, listener: u8) -> Option<Arc<PasswordFile>> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files.by_listener.get(usize::from(listener))?.clone()
    }

    /// The generation of the files in force.
    fn generation(&self) -> u64 {
        self.files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Puts `loaded`'s files in force.
    pub fn replace(&self, loaded: &Loaded) {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        *files = Files {
            generation: loaded.policy.generation,
            by_listener: loaded.files.clone(),
        };
    }
}

/// The access policy and the password files, read from the listeners' settings.
#[derive(Clone)]
pub struct Loaded {
    /// What the loops enforce.
    pub policy: AccessPolicy,
    /// Each listener's password file, for the verifiers and SCRAM.
    pub files: Vec<Option<Arc<PasswordFile>>>,
}

/// Reads every listener's password and ACL files (a file named by several listeners is
/// read once). A broken file fails the whole load, with its file, line and what is wrong.
pub fn load(listeners: &[ListenerSettings], generation: u64) -> Result<Loaded, String> {
    let mut passwords: HashMap<&Path, Arc<PasswordFile>> = HashMap::new();
    let mut acls: HashMap<&Path, Arc<Acl>> = HashMap::new();
    let mut policy = Vec::with_capacity(listeners.len());
    let mut files = Vec::with_capacity(listeners.len());
    for l in listeners {
        let a = &l.access;
        let file = load_once(
            &mut passwords,
            a.password_file.as_deref(),
            PasswordFile::load,
        )?;
        let acl = load_once(&mut acls, a.acl_file.as_deref(), Acl::load)?;
        policy.push(ListenerAccess {
            allow_anonymous: a.allow_anonymous,
            users: file.clone().map(|f| f as Arc<dyn UserDirectory>),
            acl,
            session_takeover: a.session_takeover,
        });
        files.push(file);
    }
    Ok(Loaded {
        policy: AccessPolicy::new(policy, generation),
        files,
    })
}

/// The file at `path` (if any), read once however many listeners name it.
fn load_once<'a, T, E: std::fmt::Display>(
    loaded: &mut HashMap<&'a Path, Arc<T>>,
    path: Option<&'a Path>,
    load: impl Fn(&Path) -> Result<T, E>,
) -> Result<Option<Arc<T>>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    if let Some(done) = loaded.get(path) {
        return Ok(Some(Arc::clone(done)));
    }
    let value = Arc::new(load(path).map_err(|e| e.to_string())?);
    loaded.insert(path, Arc::clone(&value));
    Ok(Some(value))
}

/// One verification asked by a loop.
pub struct Job {
    /// The loop whose CONNECT waits.
    pub loop_index: usize,
    /// Its connection there.
    pub conn: ConnId,
    /// The listener that accepted it.
    pub listener: u8,
    /// The user name.
    pub username: Box<str>,
    /// The password.
    pub password: Vec<u8>,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// When the loop asked.
    pub received: Instant,
}

/// A verdict waiting for its time ([`FAILURE_DELAY_MS`]).
struct Delayed {
    due: Instant,
    loop_index: usize,
    conn: ConnId,
    verdict: Verdict,
}

/// What the verifier threads share.
struct State {
    /// Successful logins: (listener, user) → (keyed hash of the password, file generation).
    remembered: HashMap<(u8, Box<str>), ([u8; 32], u64)>,
    /// Failures per source address: (window start, failures).
    failures: HashMap<IpAddr, (Instant, u32)>,
    /// Since the last summary: failures, early refusals, and when it was logged.
    failed: u64,
    throttled: u64,
    summary_at: Instant,
}

/// What the loops share of authentication: the files in force, the access policy, and the
/// verifier threads.
pub struct Credentials {
    /// The password files in force (the verifiers and SCRAM read them).
    pub store: Arc<CredentialStore>,
    /// The verifier threads.
    pub verifier: Verifier,
    /// The access policy in force (each loop holds a copy).
    policy: Mutex<AccessPolicy>,
}

impl Credentials {
    /// Puts `loaded` in force and starts the verifiers.
    pub fn start(loaded: Loaded, peers: Peers) -> std::io::Result<Credentials> {
        let store = Arc::new(CredentialStore::default());
        store.replace(&loaded);
        let verifier = Verifier::start(Arc::clone(&store), peers)?;
        Ok(Credentials {
            store,
            verifier,
            policy: Mutex::new(loaded.policy),
        })
    }

    /// The access policy in force.
    pub fn policy(&self) -> AccessPolicy {
        self.policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files of `listeners` into a new generation and puts it in force;
    /// returns the policy for the loops. A broken file changes nothing.
    pub fn reload(&self, listeners: &[ListenerSettings]) -> Result<AccessPolicy, String> {
        let mut policy = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = load(listeners, policy.generation + 1)?;
        self.store.replace(&loaded);
        *policy = loaded.policy.clone();
        Ok(loaded.policy)
    }
}

/// The verifier threads' handle.
pub struct Verifier {
    jobs: Sender<Job>,
}

impl Verifier {
    /// Starts the threads; verdicts go to the loops through `peers`.
    pub fn start(store: Arc<CredentialStore>, peers: Peers) -> std::io::Result<Verifier> {
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(MAX_PENDING_VERIFICATIONS);
        let (delay, delayed) = crossbeam_channel::unbounded::<Delayed>();
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let state = Arc::new(Mutex::new(State {
            remembered: HashMap::new(),
            failures: HashMap::new(),
            failed: 0,
            throttled: 0,
            summary_at: Instant::now(),
        }));
        for i in 0..VERIFIER_THREADS {
            let worker = Worker {
                queue: queue.clone(),
                delay: delay.clone(),
                store: Arc::clone(&store),
                state: Arc::clone(&state),
                peers: Arc::clone(&peers),
                key,
            };
            std::thread::Builder::new()
                .name(format!("starling-verify-{i}"))
                .spawn(move || worker.run())?;
        }
        std::thread::Builder::new()
            .name("starling-verify-delay".into())
            .spawn(move || deliver_delayed(&delayed, &peers))?;
        Ok(Verifier { jobs })
    }

    /// Queues `job`; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}

/// Sends `verdict` to the loop holding `conn`.
fn deliver(peers: &Peers, loop_index: usize, conn: ConnId, verdict: Verdict) {
    if let Some(peer) = peers.get(loop_index)
        && peer.send(Inbound::Verdict(conn, verdict)).is_ok()
    {
        let _ = peer.wake();
    }
}

/// The delay thread: each refusal at its time.
fn deliver_delayed(delayed: &Receiver<Delayed>, peers: &Peers) {
    while let Ok(d) = delayed.recv() {
        let now = Instant::now();
        if d.due > now {
            std::thread::sleep(d.due - now);
        }
        deliver(peers, d.loop_index, d.conn, d.verdict);
    }
}

/// One verifier thread.
struct Worker {
    queue: Receiver<Job>,
    delay: Sender<Delayed>,
    store: Arc<CredentialStore>,
    state: Arc<Mutex<State>>,
    peers: Peers,
    key: [u8; 32],
}

impl Worker {
    fn run(self) {
        while let Ok(job) = self.queue.recv() {
            let verdict = self.verdict(&job);
            if verdict == Verdict::Accepted {
                deliver(&self.peers, job.loop_index, job.conn, verdict);
            } else {
                let due = job.received + Duration::from_millis(FAILURE_DELAY_MS);
                let delayed = Delayed {
                    due,
                    loop_index: job.loop_index,
                    conn: job.conn,
                    verdict,
                };
                let _ = self.delay.send(delayed);
            }
            self.summarize();
        }
    }

    /// Verifies one job: throttled, remembered, or derived.
    fn verdict(&self, job: &Job) -> Verdict {
        let now = Instant::now();
        if self.throttled(job.ip, now) {
            return Verdict::Throttled;
        }
        let generation = self.store.generation();
        let tag = self.tag(&job.password);
        let key = (job.listener, job.username.clone());
        if let Some((known, at)) = self.lock().remembered.get(&key)
            && *at == generation
            && bool::from(known.ct_eq(&tag))
        {
            return Verdict::Accepted;
        }
        let ok = self
            .store
            .file(job.listener)
            .and_then(|file| {
                file.get(&job.username)
                    .map(|hash| hash.verify(&job.password))
            })
            .unwrap_or(false);
        let mut state = self.lock();
        if ok {
            if state.remembered.len() >= MAX_REMEMBERED_LOGINS {
                state.remembered.clear();
            }
            state.remembered.insert(key, (tag, generation));
            return Verdict::Accepted;
        }
        state.failed += 1;
        if let Some(ip) = job.ip {
            if state.failures.len() >= MAX_TRACKED_ADDRESSES {
                state.failures.clear();
            }
            let entry = state.failures.entry(ip).or_insert((now, 0));
            if now.duration_since(entry.0) > Duration::from_millis(FAILURE_WINDOW_MS) {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Verdict::Refused
    }

    /// Whether `ip` is past its failures for the window (counted as an early refusal).
    fn throttled(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let Some(ip) = ip else {
            return false;
        };
        let mut state = self.lock();
        let over = state.failures.get(&ip).is_some_and(|(start, failures)| {
            *failures >= MAX_FAILURES_PER_WINDOW
                && now.duration_since(*start) <= Duration::from_millis(FAILURE_WINDOW_MS)
        });
        if over {
            state.throttled += 1;
        }
        over
    }

    /// The keyed hash a remembered login is matched by.
    fn tag(&self, password: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    /// Logs failures and early refusals since the last summary, once per interval.
    fn summarize(&self) {
        let mut state = self.lock();
        let elapsed = state.summary_at.elapsed();
        if elapsed < Duration::from_millis(FAILURE_SUMMARY_INTERVAL_MS)
            || (state.failed == 0 && state.throttled == 0)
        {
            return;
        }
        let throttling = state
            .failures
            .values()
            .filter(|(_, n)| *n >= MAX_FAILURES_PER_WINDOW)
            .count();
        tracing::warn!(
            failed_logins = state.failed,
            refused_early = state.throttled,
            addresses_throttled = throttling,
            interval_secs = elapsed.as_secs(),
            "failed logins (bad user name or password) and logins refused early after \
             {MAX_FAILURES_PER_WINDOW} failures from one address within {} s",
            FAILURE_WINDOW_MS / 1000
        );
        state.failed = 0;
        state.throttled = 0;
        state.summary_at = Instant::now();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
