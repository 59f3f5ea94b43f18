//! `Mem`, the in-memory stream tungstenite runs over: the client's bytes on one side, the
//! bytes for the client on the other.
//!
//! tungstenite is only ever given whole frames ([`Input::release`]). Its frame reader
//! reserves a frame's whole declared length as soon as it has parsed the header, so a
//! client sending the 14 bytes of a header that announces the largest frame allowed, and
//! then nothing, would make the connection hold that much; here a frame that is not whole
//! yet holds the bytes that came, in [`Input`], and tungstenite sees it once it is whole.
//! The frame boundaries are found with tungstenite's own header parser
//! (`FrameHeader::parse`), so both read the same frames.
//!
//! It also lets the layer know when tungstenite holds no partial frame and no partial
//! message ([`Input::in_message`]): the moment it can be dropped, and built afresh with
//! empty buffers at the next read.

use std::io::{self, Cursor, Read, Write};

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// The stream: input for tungstenite to read, output it (and the layer) wrote.
#[derive(Debug, Default)]
pub(super) struct Mem {
    /// The client's bytes.
    pub(super) input: Input,
    /// The bytes for the client.
    pub(super) output: Wire,
}

impl Mem {
    /// A stream whose first `ready` bytes of `bytes` are readable (an upgrade request; what
    /// follows it waits for [`Input::release`]).
    pub(super) fn with_request(bytes: Vec<u8>, ready: usize) -> Mem {
        Mem {
            input: Input {
                ready: ready.min(bytes.len()),
                bytes,
                ..Input::default()
            },
            output: Wire::default(),
        }
    }

    /// Heap bytes held by the input and the output.
    pub(super) fn heap_bytes(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }
}

impl Read for Mem {
    /// Hands over released bytes; `WouldBlock` when there are none (the end of what the
    /// client sent so far, never the end of the stream).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let input = &mut self.input;
        let readable = input.bytes.get(input.read..input.ready).unwrap_or_default();
        if readable.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = readable.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), readable.get(..n)) {
            to.copy_from_slice(from);
        }
        input.read += n;
        Ok(n)
    }
}

impl Write for Mem {
    /// Takes every byte: the output grows until the driver sends it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The client's bytes that tungstenite has not read: whole frames up to `ready`, then the
/// start of a frame still incomplete.
#[derive(Debug, Default)]
pub(super) struct Input {
    /// The bytes; emptied (and freed) once tungstenite has read them all.
    bytes: Vec<u8>,
    /// How far tungstenite has read.
    read: usize,
    /// The end of the bytes tungstenite may read.
    ready: usize,
    /// Every byte is released as it comes: a frame tungstenite refuses from its header
    /// alone was found, and tungstenite ends the connection there.
    passthrough: bool,
    /// A data frame without FIN was released and its message's last frame was not:
    /// tungstenite holds a partial message.
    in_message: bool,
    /// The payload bytes of that partial message so far.
    message_bytes: usize,
    /// The largest frame released since [`Input::new_build`], header included (what
    /// tungstenite's read buffer grew to hold).
    largest_frame_bytes: usize,
}

impl Input {
    /// Adds the bytes of one read and releases the frames they complete.
    /// `max_frame_bytes` is the largest payload tungstenite accepts.
    pub(super) fn push(&mut self, wire: &[u8], max_frame_bytes: usize) {
        self.compact();
        self.bytes.extend_from_slice(wire);
        self.release(max_frame_bytes);
    }

    /// Makes readable every whole frame after `ready`. A header tungstenite refuses on its
    /// own (a reserved opcode, a length over `max_frame_bytes`) releases everything, so
    /// tungstenite reads it and says why.
    fn release(&mut self, max_frame_bytes: usize) {
        if self.passthrough {
            self.ready = self.bytes.len();
            return;
        }
        loop {
            let rest = self.bytes.get(self.ready..).unwrap_or_default();
            let mut cursor = Cursor::new(rest);
            let (header, payload_bytes) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return,
                Err(_) => return self.pass_through(),
            };
            let Ok(payload_bytes) = usize::try_from(payload_bytes) else {
                return self.pass_through();
            };
            if payload_bytes > max_frame_bytes {
                return self.pass_through();
            }
            let header_bytes = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            let frame_bytes = header_bytes.saturating_add(payload_bytes);
            if rest.len() < frame_bytes {
                return;
            }
            self.ready += frame_bytes;
            self.note_frame(&header, payload_bytes, frame_bytes);
        }
    }

    /// Releases everything from now on (see `passthrough`).
    fn pass_through(&mut self) {
        self.passthrough = true;
        self.ready = self.bytes.len();
    }

    /// Follows the messages the released frames make (tungstenite checks their order).
    fn note_frame(&mut self, header: &FrameHeader, payload_bytes: usize, frame_bytes: usize) {
        self.largest_frame_bytes = self.largest_frame_bytes.max(frame_bytes);
        match header.opcode {
            OpCode::Control(_) => return,
            OpCode::Data(Data::Continue) => {
                self.message_bytes = self.message_bytes.saturating_add(payload_bytes);
            }
            OpCode::Data(_) => self.message_bytes = payload_bytes,
        }
        self.in_message = !header.is_final;
        if header.is_final {
            self.message_bytes = 0;
        }
    }

    /// Whether tungstenite holds a message of which it has not had the last frame.
    pub(super) fn in_message(&self) -> bool {
        self.in_message
    }

    /// The payload bytes of that message so far.
    pub(super) fn message_bytes(&self) -> usize {
        self.message_bytes
    }

    /// The largest frame released since [`Input::new_build`].
    pub(super) fn largest_frame_bytes(&self) -> usize {
        self.largest_frame_bytes
    }

    /// Bytes released and not yet read by tungstenite.
    pub(super) fn readable_bytes(&self) -> usize {
        self.ready - self.read
    }

    /// tungstenite was dropped: the next one holds nothing of the frames before.
    pub(super) fn new_build(&mut self) {
        self.largest_frame_bytes = 0;
    }

    /// Drops what tungstenite has read, after a read stopped for want of input: the bytes
    /// are freed when none is left, shrunk to the incomplete frame otherwise.
    pub(super) fn compact(&mut self) {
        if self.read >= self.bytes.len() {
            self.bytes = Vec::new();
        } else if self.read > 0 {
            self.bytes.drain(..self.read);
            self.bytes.shrink_to(self.bytes.len());
        }
        self.ready -= self.read.min(self.ready);
        self.read = 0;
    }

    /// Heap bytes held.
    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Bytes for the client, sent up to `sent`.
#[derive(Debug, Default)]
pub(super) struct Wire {
    /// The bytes; freed once all are sent.
    pub(super) bytes: Vec<u8>,
    /// How many were sent.
    sent: usize,
}

impl Wire {
    /// Output already whole (an HTTP refusal).
    pub(super) fn from_bytes(bytes: Vec<u8>) -> Wire {
        Wire { bytes, sent: 0 }
    }

    /// The bytes not sent yet.
    pub(super) fn pending(&self) -> &[u8] {
        self.bytes.get(self.sent..).unwrap_or_default()
    }

    /// `n` more bytes were sent. The buffer is freed when all are, and its sent half
    /// dropped when it is most of it (so a client that never catches up costs what it has
    /// not read, not everything it was sent).
    pub(super) fn consume(&mut self, n: usize) {
        self.sent = self.sent.saturating_add(n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            *self = Wire::default();
        } else if self.sent >= self.bytes.len() / 2 {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Heap bytes held.
    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}
