//! Listening sockets: one per event loop and address, all bound with `SO_REUSEPORT` so the
//! kernel spreads incoming connections across the loops.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues per listener before refusing more.
pub const LISTEN_BACKLOG_CONNECTIONS: i32 = 1024;

/// A non-blocking `SO_REUSEPORT` listener on `addr` with `TCP_NODELAY` set (Linux passes it
/// on to accepted sockets; the loop sets it on each accepted socket as well).
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG_CONNECTIONS)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// One listener per loop for each address in `addrs`: `result[loop][address]`. A port of 0
/// is resolved by the first bind and reused for the other loops, so they share one port.
pub fn bind_all(addrs: &[SocketAddr], loops: usize) -> io::Result<Vec<Vec<mio::net::TcpListener>>> {
    let mut per_loop: Vec<Vec<mio::net::TcpListener>> = (0..loops).map(|_| Vec::new()).collect();
    for &addr in addrs {
        let mut addr = addr;
        for listeners in per_loop.iter_mut() {
            let listener = bind_reuseport(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            if addr.port() == 0 {
                addr = listener.local_addr()?;
            }
            listeners.push(listener);
        }
    }
    Ok(per_loop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_every_loop() {
        let Ok(addr) = "127.0.0.1:0".parse::<SocketAddr>() else {
            panic!("literal address");
        };
        let per_loop = match bind_all(&[addr], 3) {
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
}
