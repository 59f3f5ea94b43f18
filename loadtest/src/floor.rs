//! The floor: the least work any MQTT server must do per connection, to measure what the
//! machine, the kernel and the harness allow before any broker logic runs.
//!
//! `starling-floor` accepts on one `SO_REUSEPORT` listener per thread (like Starling's
//! loops), answers every CONNECT with CONNACK 0 (3.1.1 or 5.0, after the CONNECT's protocol
//! level), every SUBSCRIBE with a SUBACK granting QoS 0 to each filter and every PINGREQ
//! with PINGRESP, and holds the socket until the client closes it or sends DISCONNECT. It
//! keeps no sessions, checks nothing it does not need to frame packets, and routes no
//! PUBLISH (they are read and dropped): it is a measuring stick for the `conn` and `churn`
//! scenarios (`scripts/compare.sh` with `FLOOR=1`), not a broker. A broker that matches the
//! floor's connect rate or CONNACK latency on a machine is limited by that machine, not by
//! its own code.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::mqtt::{self, ParseError};

/// Listen backlog, as Starling's listeners use.
const LISTEN_BACKLOG: i32 = 1024;
/// Readiness events taken per poll.
const EVENTS_PER_POLL: usize = 1024;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 4096;
/// A client whose unparsed bytes pass this is closed (the floor only frames small packets).
const MAX_BUFFERED_BYTES: usize = 64 * 1024;
/// The listener's token; connections use their slot index.
const LISTENER: Token = Token(usize::MAX);

/// One client: its socket and the bytes not yet framed or written.
struct Client {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The CONNECT's protocol level (4: 3.1.1, 5: 5.0); 0 before CONNECT.
    level: u8,
}

/// The reply to one whole packet (`packet` includes its fixed header), appended to `out`;
/// `level` is the connection's protocol level, set by CONNECT. `false`: close the client.
pub fn answer(packet: &[u8], level: &mut u8, out: &mut Vec<u8>) -> bool {
    let Ok((header_len, _)) = mqtt::frame(packet) else {
        return false;
    };
    let body = &packet[header_len..];
    match packet.first().map(|b| b >> 4) {
        Some(1) => {
            // Variable header: protocol name (2 + 4 bytes for "MQTT"), then the level.
            let name_len = body
                .get(..2)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            *level = body.get(2 + name_len).copied().unwrap_or(4);
            if *level == 5 {
                out.extend_from_slice(&[0x20, 3, 0, 0, 0]);
            } else {
                out.extend_from_slice(&[0x20, 2, 0, 0]);
            }
            true
        }
        Some(8) => suback(body, *level, out),
        Some(12) => {
            out.extend_from_slice(&[0xd0, 0]);
            true
        }
        Some(14) => false,
        _ => true,
    }
}

/// SUBACK granting QoS 0 to every filter of a SUBSCRIBE body.
fn suback(body: &[u8], level: u8, out: &mut Vec<u8>) -> bool {
    let Some(id) = body.get(..2) else {
        return false;
    };
    let mut at = 2;
    if level == 5 {
        match mqtt::properties_len(body, at) {
            Ok(skip) => at += skip,
            Err(_) => return false,
        }
    }
    let mut filters = 0usize;
    while at < body.len() {
        let Some(len) = body.get(at..at + 2) else {
            return false;
        };
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]])) + 1;
        filters += 1;
    }
    let props = usize::from(level == 5);
    let remaining = 2 + props + filters;
    out.push(0x90);
    mqtt::put_len(out, remaining);
    out.extend_from_slice(id);
    if props == 1 {
        out.push(0);
    }
    out.extend(std::iter::repeat_n(0u8, filters));
    true
}

/// Serves `addr` on `threads` threads until the process is stopped.
pub fn serve(addr: SocketAddr, threads: usize) -> io::Result<()> {
    let listeners: Vec<TcpListener> = (0..threads.max(1))
        .map(|_| bind(addr))
        .collect::<io::Result<_>>()?;
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|listener| std::thread::spawn(move || serve_one(listener)))
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| io::Error::other("a floor thread panicked"))??;
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// One thread's loop: accept, read, answer, hold.
fn serve_one(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut vacant: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let i = vacant.pop().unwrap_or_else(|| {
                        clients.push(None);
                        clients.len() - 1
                    });
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if poll
                        .registry()
                        .register(&mut stream, Token(i), interest)
                        .is_err()
                    {
                        vacant.push(i);
                        continue;
                    }
                    clients[i] = Some(Client {
                        stream,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        level: 0,
                    });
                    // The CONNECT is often already here: answer it without another poll.
                    service(&mut clients, &mut vacant, i, &mut scratch, &poll);
                }
            } else {
                service(
                    &mut clients,
                    &mut vacant,
                    event.token().0,
                    &mut scratch,
                    &poll,
                );
            }
        }
    }
}

/// Reads what `clients[i]` sent, answers it and writes what the socket takes; closes the
/// client on end of stream, error, DISCONNECT or bytes that cannot be framed.
fn service(
    clients: &mut [Option<Client>],
    vacant: &mut Vec<usize>,
    i: usize,
    scratch: &mut [u8],
    poll: &Poll,
) {
    let Some(Some(client)) = clients.get_mut(i) else {
        return;
    };
    if !(read_and_answer(client, scratch) && flush(client)) {
        let _ = poll.registry().deregister(&mut client.stream);
        clients[i] = None;
        vacant.push(i);
    }
}

fn read_and_answer(client: &mut Client, scratch: &mut [u8]) -> bool {
    loop {
        match client.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => client.rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    let mut at = 0;
    loop {
        match mqtt::frame(&client.rbuf[at..]) {
            Ok((_, len)) => {
                if !answer(
                    &client.rbuf[at..at + len],
                    &mut client.level,
                    &mut client.wbuf,
                ) {
                    return false;
                }
                at += len;
            }
            Err(ParseError::Incomplete) => break,
            Err(ParseError::Malformed(_)) => return false,
        }
    }
    client.rbuf.drain(..at);
    client.rbuf.len() <= MAX_BUFFERED_BYTES
}

fn flush(client: &mut Client) -> bool {
    while !client.wbuf.is_empty() {
        match client.stream.write(&client.wbuf) {
            Ok(0) => return false,
            Ok(n) => {
                client.wbuf.drain(..n);
            }
            // Edge-triggered: the next writable event resumes.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_whole_incomplete_and_malformed_packets() {
        use mqtt::frame;
        assert_eq!(frame(&[0xc0, 0]), Ok((2, 2)));
        assert_eq!(frame(&[0x30, 3, 0, 1]), Err(ParseError::Incomplete));
        assert_eq!(frame(&[0x30, 0x80, 1]), Err(ParseError::Incomplete));
        assert!(matches!(
            frame(&[0x30, 0x80, 0x80, 0x80, 0x80, 1]),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn answers_connect_by_protocol_level() {
        let mut out = Vec::new();
        let mut level = 0;
        let v5 = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60];
        assert!(answer(&v5, &mut level, &mut out));
        assert_eq!((level, out.as_slice()), (5, &[0x20, 3, 0, 0, 0][..]));
        out.clear();
        let v3 = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60];
        assert!(answer(&v3, &mut level, &mut out));
        assert_eq!((level, out.as_slice()), (4, &[0x20, 2, 0, 0][..]));
    }

    #[test]
    fn suback_grants_qos0_to_each_filter() {
        let mut out = Vec::new();
        let mut level = 4;
        // SUBSCRIBE id 7: "a" QoS 1, "bc" QoS 0.
        let sub = [0x82, 11, 0, 7, 0, 1, b'a', 1, 0, 2, b'b', b'c', 0];
        assert!(answer(&sub, &mut level, &mut out));
        assert_eq!(out, [0x90, 4, 0, 7, 0, 0]);
        out.clear();
        level = 5;
        let sub5 = [0x82, 7, 0, 9, 0, 0, 1, b'a', 1];
        assert!(answer(&sub5, &mut level, &mut out));
        assert_eq!(out, [0x90, 4, 0, 9, 0, 0]);
        assert!(!answer(&[0x82, 1, 0], &mut level, &mut out));
        assert!(!answer(&[0xe0, 0], &mut level, &mut out));
    }
}
