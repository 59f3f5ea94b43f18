//! Limits decided at accept, before a connection costs a pool object: connections per source
//! IP (`limits.max_connections_per_ip`) and per listener (`listeners[i].max_connections`).
//! Both are counted across every loop, from accept to the socket's close, whichever loop
//! the socket has moved to; a refused socket is closed at once.
//!
//! The counts are kept whether or not a limit is set, so that a limit switched on by a live
//! reload counts the connections already open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::core::AcceptRefusal;

/// Where a socket came from: what its counts are kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The peer's address (the client's, from a PROXY header, on a listener with
    /// `proxy_protocol`).
    pub ip: IpAddr,
    /// The peer's port (likewise).
    pub port: u16,
    /// The listener that accepted it (an index below `MAX_LISTENERS`).
    pub listener: u8,
}

impl Origin {
    /// The peer's socket address.
    pub fn peer(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.port)
    }
}

/// One listener's open connections and limit.
#[derive(Debug, Default)]
struct ListenerCount {
    open: AtomicUsize,
    /// 0: no limit of its own.
    max: AtomicUsize,
}

/// The counts and limits, shared by every loop.
#[derive(Debug, Default)]
pub struct Admission {
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// 0: no limit.
    max_per_ip: AtomicUsize,
    listeners: Vec<ListenerCount>,
}

impl Admission {
    /// Counts for listeners with these limits (0: none) and a per-IP limit (0: none).
    pub fn new(listener_max: &[usize], max_per_ip: usize) -> Admission {
        Admission {
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: AtomicUsize::new(max_per_ip),
            listeners: listener_max
                .iter()
                .map(|&max| ListenerCount {
                    open: AtomicUsize::new(0),
                    max: AtomicUsize::new(max),
                })
                .collect(),
        }
    }

    /// New limits (a live reload); connections already open stay open.
    pub fn set_limits(&self, listener_max: &[usize], max_per_ip: usize) {
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
        for (count, &max) in self.listeners.iter().zip(listener_max) {
            count.max.store(max, Ordering::Relaxed);
        }
    }

    /// Counts a new socket, or says which limit refuses it (nothing counted then).
    pub fn admit(&self, origin: Origin) -> Result<(), AcceptRefusal> {
        self.admit_as(origin, true)
    }

    /// Counts a new socket on a listener with `proxy_protocol`, whose peer is the proxy:
    /// under its address, but without the per-IP limit (every client of the proxy shares
    /// it), which applies once the PROXY header names the client ([`Admission::readmit`]).
    pub fn admit_proxied(&self, origin: Origin) -> Result<(), AcceptRefusal> {
        self.admit_as(origin, false)
    }

    fn admit_as(&self, origin: Origin, per_ip_limit: bool) -> Result<(), AcceptRefusal> {
        let listener = self.listeners.get(usize::from(origin.listener));
        if let Some(l) = listener {
            let max = l.max.load(Ordering::Relaxed);
            let claimed = l
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (max == 0 || n < max).then_some(n + 1)
                })
                .is_ok();
            if !claimed {
                return Err(AcceptRefusal::ListenerFull);
            }
        }
        let max_per_ip = if per_ip_limit {
            self.max_per_ip.load(Ordering::Relaxed)
        } else {
            0
        };
        let admitted = match self.per_ip.lock() {
            Ok(mut map) => {
                let count = map.entry(origin.ip).or_insert(0);
                if max_per_ip != 0 && *count as usize >= max_per_ip {
                    if *count == 0 {
                        map.remove(&origin.ip);
                    }
                    false
                } else {
                    *count += 1;
                    true
                }
            }
            // A loop panicked while holding the lock: the process is going down anyway.
            Err(_) => true,
        };
        if !admitted {
            if let Some(l) = listener {
                l.open.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(AcceptRefusal::PerIp);
        }
        Ok(())
    }

    /// The socket admitted under `from` turns out to come from `to.ip` (a PROXY header,
    /// `server::proxy`): its per-IP count moves there, or the limit refuses it (nothing
    /// moved then; the socket is still counted under `from` until released). The listener
    /// count stays as it is.
    pub fn readmit(&self, from: Origin, to: Origin) -> Result<(), AcceptRefusal> {
        if from.ip == to.ip {
            return Ok(());
        }
        let max_per_ip = self.max_per_ip.load(Ordering::Relaxed);
        let Ok(mut map) = self.per_ip.lock() else {
            // A loop panicked while holding the lock: the process is going down anyway.
            return Ok(());
        };
        let count = map.entry(to.ip).or_insert(0);
        if max_per_ip != 0 && *count as usize >= max_per_ip {
            if *count == 0 {
                map.remove(&to.ip);
            }
            return Err(AcceptRefusal::PerIp);
        }
        *count += 1;
        if let Some(count) = map.get_mut(&from.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&from.ip);
            }
        }
        Ok(())
    }

    /// The socket admitted under `origin` is closed.
    pub fn release(&self, origin: Origin) {
        if let Some(l) = self.listeners.get(usize::from(origin.listener)) {
            l.open.fetch_sub(1, Ordering::AcqRel);
        }
        if let Ok(mut map) = self.per_ip.lock()
            && let Some(count) = map.get_mut(&origin.ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&origin.ip);
            }
        }
    }

    /// Connections open through listener `i`.
    pub fn listener_open(&self, i: usize) -> usize {
        self.listeners
            .get(i)
            .map_or(0, |l| l.open.load(Ordering::Relaxed))
    }

    /// Connections open from `ip`.
    pub fn ip_open(&self, ip: IpAddr) -> usize {
        self.per_ip
            .lock()
            .map_or(0, |map| map.get(&ip).map_or(0, |&n| n as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(last: u8, listener: u8) -> Origin {
        Origin {
            ip: IpAddr::from([127, 0, 0, last]),
            port: 1000,
            listener,
        }
    }

    #[test]
    fn readmit_moves_the_per_ip_count() {
        let admission = Admission::new(&[2], 1);
        assert_eq!(admission.admit(origin(1, 0)), Ok(()));
        assert_eq!(admission.readmit(origin(1, 0), origin(2, 0)), Ok(()));
        assert_eq!(admission.ip_open(origin(1, 0).ip), 0);
        assert_eq!(admission.ip_open(origin(2, 0).ip), 1);
        assert_eq!(admission.listener_open(0), 1);
        // A second socket from the proxy claiming the same source is refused, and stays
        // counted under the proxy's address until released.
        assert_eq!(admission.admit(origin(1, 0)), Ok(()));
        assert_eq!(
            admission.readmit(origin(1, 0), origin(2, 0)),
            Err(AcceptRefusal::PerIp)
        );
        assert_eq!(admission.ip_open(origin(1, 0).ip), 1);
        admission.release(origin(1, 0));
        assert_eq!(admission.ip_open(origin(1, 0).ip), 0);
        assert_eq!(admission.listener_open(0), 1);
        // The proxy's own connections are not limited by its address.
        assert_eq!(admission.admit_proxied(origin(1, 0)), Ok(()));
        assert_eq!(admission.ip_open(origin(1, 0).ip), 1);
        // The same address: nothing moves.
        assert_eq!(admission.readmit(origin(2, 0), origin(2, 0)), Ok(()));
        assert_eq!(admission.ip_open(origin(2, 0).ip), 1);
    }

    #[test]
    fn per_ip_and_per_listener_limits() {
        let admission = Admission::new(&[0, 2], 3);
        for _ in 0..3 {
            assert_eq!(admission.admit(origin(1, 0)), Ok(()));
        }
        assert_eq!(admission.admit(origin(1, 0)), Err(AcceptRefusal::PerIp));
        assert_eq!(admission.listener_open(0), 3);
        assert_eq!(admission.admit(origin(2, 1)), Ok(()));
        assert_eq!(admission.admit(origin(3, 1)), Ok(()));
        assert_eq!(
            admission.admit(origin(4, 1)),
            Err(AcceptRefusal::ListenerFull)
        );
        admission.release(origin(1, 0));
        assert_eq!(admission.ip_open(origin(1, 0).ip), 2);
        assert_eq!(admission.admit(origin(1, 0)), Ok(()));
        admission.set_limits(&[0, 0], 0);
        assert_eq!(admission.admit(origin(1, 1)), Ok(()));
        assert_eq!(admission.ip_open(origin(1, 0).ip), 4);
    }
}
