//! Listening sockets: one per event loop and address, all in one `SO_REUSEPORT` group so the
//! kernel spreads incoming connections across the loops, and closed to every other process.
//!
//! `SO_REUSEPORT` lets any socket of the same user that sets it join the group. If every
//! socket set it before `bind`, a second instance of the broker started on the same address
//! would bind too and silently take part of the clients. So the first socket of each
//! address binds without it, which the kernel refuses (`EADDRINUSE`) when anything else
//! listens there, as it refuses any plain server; it sets `SO_REUSEPORT` between `bind`
//! and `listen`, and the instance's other loops then bind beside it. A second instance's
//! first socket, binding without the option, conflicts with the group and fails.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues per listener before refusing more.
pub const LISTEN_BACKLOG_CONNECTIONS: i32 = 1024;

/// Whether a socket founds the address's group (binds alone first) or joins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first socket on the address: `bind` must find it free.
    Founder,
    /// Another loop's socket on an address the founder holds.
    Member,
}

/// A non-blocking listener on `addr` with `TCP_NODELAY` set (Linux passes it on to accepted
/// sockets; the loop sets it on each accepted socket as well), in the address's
/// `SO_REUSEPORT` group (see the module docs for `role`).
pub fn bind_reuseport(addr: SocketAddr, role: Role) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if role == Role::Member {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if role == Role::Founder {
        socket.set_reuse_port(true)?;
    }
    socket.listen(LISTEN_BACKLOG_CONNECTIONS)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// One listener per loop for each address in `addrs`: `result[loop][address]`. A port of 0
/// is resolved by the first bind and reused for the other loops, so they share one port.
/// An address something else listens on (another instance included) is an error of kind
/// `AddrInUse` that says so.
pub fn bind_all(addrs: &[SocketAddr], loops: usize) -> io::Result<Vec<Vec<mio::net::TcpListener>>> {
    let mut per_loop: Vec<Vec<mio::net::TcpListener>> = (0..loops).map(|_| Vec::new()).collect();
    for &addr in addrs {
        let mut addr = addr;
        for (index, listeners) in per_loop.iter_mut().enumerate() {
            let role = if index == 0 {
                Role::Founder
            } else {
                Role::Member
            };
            let listener = bind_reuseport(addr, role).map_err(|e| bind_error(addr, &e))?;
            if addr.port() == 0 {
                addr = listener.local_addr()?;
            }
            listeners.push(listener);
        }
    }
    Ok(per_loop)
}

/// The error for a failed bind, naming the address (and, when it is taken, what may hold it).
fn bind_error(addr: SocketAddr, error: &io::Error) -> io::Error {
    let message = if error.kind() == io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {addr}: address in use (another process listens there, \
             perhaps another instance of this broker)"
        )
    } else {
        format!("cannot listen on {addr}: {error}")
    };
    io::Error::new(error.kind(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn port_zero_is_shared_by_every_loop() {
        let per_loop = match bind_all(&[loopback_any_port()], 3) {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let ports: Vec<u16> = per_loop
            .iter()
            .map(|l| l[0].local_addr().map(|a| a.port()).unwrap_or(0))
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&p| p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_second_group_on_the_same_address_is_refused() {
        let first = match bind_all(&[loopback_any_port()], 2) {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match first[0][0].local_addr() {
            Ok(addr) => addr,
            Err(e) => panic!("local address: {e}"),
        };
        match bind_all(&[addr], 2) {
            Ok(_) => panic!("a second group bound {addr}"),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
                assert!(e.to_string().contains("address in use"), "{e}");
            }
        }
    }
}
