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
//! - **Throttling.** Failures count against their source address (`super::throttle`, shared
//!   with the loops for SCRAM): an address over its limit is refused without verifying.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::mailbox::{Inbound, Peers};
use super::throttle::{FAILURE_SUMMARY_INTERVAL_MS, Throttle};
use crate::acl::Acl;
use crate::auth::password::PasswordFile;
use crate::config::ListenerSettings;
use crate::core::ConnId;
use crate::core::access::{AccessPolicy, ListenerAccess, LoginThrottle, UserDirectory};
use crate::core::credentials::Verdict;

/// Threads verifying passwords (key derivation is slow on purpose: a few of these, never
/// the loops).
pub const VERIFIER_THREADS: usize = 2;
/// Verifications waiting at most; past this a CONNECT is answered "server busy".
pub const MAX_PENDING_VERIFICATIONS: usize = 1024;
/// How long after its CONNECT a failed login is answered.
pub const FAILURE_DELAY_MS: u64 = 1000;
/// Successful logins remembered at most (the table is cleared when full).
pub const MAX_REMEMBERED_LOGINS: usize = 65_536;

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
            identity_as_username: a.identity_as_username,
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

/// Successful logins: (listener, user) → (keyed hash of the password, file generation).
type Remembered = HashMap<(u8, Box<str>), ([u8; 32], u64)>;

/// What the loops share of authentication: the files in force, the access policy, and the
/// verifier threads.
pub struct Credentials {
    /// The password files in force (the verifiers and SCRAM read them).
    pub store: Arc<CredentialStore>,
    /// The verifier threads.
    pub verifier: Verifier,
    /// Failed logins by address (the verifiers' and the loops' SCRAM exchanges').
    pub throttle: Arc<Throttle>,
    /// The access policy in force (each loop holds a copy).
    policy: Mutex<AccessPolicy>,
}

impl Credentials {
    /// Puts `loaded` in force and starts the verifiers.
    pub fn start(loaded: Loaded, peers: Peers) -> std::io::Result<Credentials> {
        let store = Arc::new(CredentialStore::default());
        store.replace(&loaded);
        let throttle = Arc::new(Throttle::default());
        let verifier = Verifier::start(Arc::clone(&store), Arc::clone(&throttle), peers)?;
        Ok(Credentials {
            store,
            verifier,
            throttle,
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
    /// The delay thread's queue (refusals of logins that failed on a loop, SCRAM's).
    delay: Sender<Delayed>,
}

impl Verifier {
    /// Starts the threads; verdicts go to the loops through `peers`.
    pub fn start(
        store: Arc<CredentialStore>,
        throttle: Arc<Throttle>,
        peers: Peers,
    ) -> std::io::Result<Verifier> {
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(MAX_PENDING_VERIFICATIONS);
        let (delay, delayed) = crossbeam_channel::unbounded::<Delayed>();
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let remembered = Arc::new(Mutex::new(Remembered::new()));
        for i in 0..VERIFIER_THREADS {
            let worker = Worker {
                queue: queue.clone(),
                delay: delay.clone(),
                store: Arc::clone(&store),
                remembered: Arc::clone(&remembered),
                throttle: Arc::clone(&throttle),
                peers: Arc::clone(&peers),
                key,
            };
            std::thread::Builder::new()
                .name(format!("starling-verify-{i}"))
                .spawn(move || worker.run())?;
        }
        std::thread::Builder::new()
            .name("starling-verify-delay".into())
            .spawn(move || deliver_delayed(&delayed, &peers, &throttle))?;
        Ok(Verifier { jobs, delay })
    }

    /// Refuses `conn` of loop `loop_index` (its login failed `at`) once the failure delay
    /// has passed.
    pub fn refuse_later(&self, loop_index: usize, conn: ConnId, at: Instant) {
        let _ = self.delay.send(Delayed {
            due: at + Duration::from_millis(FAILURE_DELAY_MS),
            loop_index,
            conn,
            verdict: Verdict::Refused,
        });
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

/// The delay thread: each refusal at its time, and the failures' summary line on time.
fn deliver_delayed(delayed: &Receiver<Delayed>, peers: &Peers, throttle: &Throttle) {
    let interval = Duration::from_millis(FAILURE_SUMMARY_INTERVAL_MS);
    loop {
        match delayed.recv_timeout(interval) {
            Ok(d) => {
                let now = Instant::now();
                if d.due > now {
                    std::thread::sleep(d.due - now);
                }
                deliver(peers, d.loop_index, d.conn, d.verdict);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        throttle.summarize();
    }
}

/// One verifier thread.
struct Worker {
    queue: Receiver<Job>,
    delay: Sender<Delayed>,
    store: Arc<CredentialStore>,
    remembered: Arc<Mutex<Remembered>>,
    throttle: Arc<Throttle>,
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
        }
    }

    /// Verifies one job: throttled, remembered, or derived.
    fn verdict(&self, job: &Job) -> Verdict {
        if job.ip.is_some_and(|ip| self.throttle.throttled(ip)) {
            return Verdict::Throttled;
        }
        let generation = self.store.generation();
        let tag = self.tag(&job.password);
        let key = (job.listener, job.username.clone());
        if let Some((known, at)) = self.remembered().get(&key)
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
        if !ok {
            if let Some(ip) = job.ip {
                self.throttle.failed(ip);
            }
            return Verdict::Refused;
        }
        let mut remembered = self.remembered();
        if remembered.len() >= MAX_REMEMBERED_LOGINS {
            remembered.clear();
        }
        remembered.insert(key, (tag, generation));
        Verdict::Accepted
    }

    /// The keyed hash a remembered login is matched by.
    fn tag(&self, password: &[u8]) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}
