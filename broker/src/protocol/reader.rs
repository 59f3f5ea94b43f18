//! A zero-allocation cursor over the body of a complete frame.
//!
//! Running out of bytes here is [`DecodeErrorKind::Truncated`] (malformed), never "need more
//! bytes": the frame is complete by the time it is read.

use super::MAX_VARINT_LEN_BYTES;
use super::error::{DecodeError, DecodeErrorKind};

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(
        &mut self,
        n: usize,
        context: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(DecodeError::new(DecodeErrorKind::Truncated, context)),
        }
    }

    pub(crate) fn u8(&mut self, context: &'static str) -> Result<u8, DecodeError> {
        match self.buf.split_first() {
            Some((&b, tail)) => {
                self.buf = tail;
                Ok(b)
            }
            None => Err(DecodeError::new(DecodeErrorKind::Truncated, context)),
        }
    }

    pub(crate) fn u16(&mut self, context: &'static str) -> Result<u16, DecodeError> {
        match self.buf.split_first_chunk::<2>() {
            Some((&b, tail)) => {
                self.buf = tail;
                Ok(u16::from_be_bytes(b))
            }
            None => Err(DecodeError::new(DecodeErrorKind::Truncated, context)),
        }
    }

    pub(crate) fn u32(&mut self, context: &'static str) -> Result<u32, DecodeError> {
        match self.buf.split_first_chunk::<4>() {
            Some((&b, tail)) => {
                self.buf = tail;
                Ok(u32::from_be_bytes(b))
            }
            None => Err(DecodeError::new(DecodeErrorKind::Truncated, context)),
        }
    }

    /// An MQTT 5 variable byte integer: at most four bytes, minimally encoded
    /// (MQTT-1.5.5-1).
    pub(crate) fn varint(&mut self, context: &'static str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..MAX_VARINT_LEN_BYTES {
            let byte = self.u8(context)?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                // A last byte of 0 after the first means a shorter encoding existed.
                if i > 0 && byte == 0 {
                    return Err(DecodeError::new(DecodeErrorKind::NonMinimalVarint, context));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::new(DecodeErrorKind::MalformedVarint, context))
    }

    /// A non-zero packet identifier (MQTT-2.3.1-1).
    pub(crate) fn packet_id(&mut self, context: &'static str) -> Result<u16, DecodeError> {
        match self.u16(context)? {
            0 => Err(DecodeError::new(DecodeErrorKind::PacketIdZero, context)),
            id => Ok(id),
        }
    }

    /// Length-prefixed binary data.
    pub(crate) fn binary(&mut self, context: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16(context)?;
        self.take(usize::from(len), context)
    }

    /// Length-prefixed string, checked for well-formed UTF-8 only (MQTT-1.5.3-1). Topic
    /// names and filters go through the topic validators, which also refuse U+0000.
    pub(crate) fn utf8(&mut self, context: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(context)?;
        std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::new(DecodeErrorKind::InvalidUtf8, context))
    }

    /// Length-prefixed string: well-formed UTF-8 (MQTT-1.5.3-1) without U+0000
    /// (MQTT-1.5.3-2).
    pub(crate) fn string(&mut self, context: &'static str) -> Result<&'a str, DecodeError> {
        let s = self.utf8(context)?;
        if s.as_bytes().contains(&0) {
            return Err(DecodeError::new(DecodeErrorKind::NullCharacter, context));
        }
        Ok(s)
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(self, context: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(DecodeErrorKind::TrailingBytes, context))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_truncated_not_incomplete() {
        let mut r = Reader::new(&[0, 5, b'a']);
        let err = r.string("t").expect_err("short");
        assert_eq!(err.kind(), DecodeErrorKind::Truncated);
        assert_eq!(
            Reader::new(&[1]).u16("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::Truncated)
        );
        assert_eq!(
            Reader::new(&[]).u8("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::Truncated)
        );
    }

    #[test]
    fn strings_must_be_utf8_without_nul_mqtt_1_5_3_1_and_1_5_3_2() {
        assert_eq!(
            Reader::new(&[0, 1, 0xFF]).string("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::InvalidUtf8)
        );
        // U+D800 encoded as CESU/WTF-8 is ill-formed UTF-8.
        assert_eq!(
            Reader::new(&[0, 3, 0xED, 0xA0, 0x80])
                .string("t")
                .map_err(|e| e.kind()),
            Err(DecodeErrorKind::InvalidUtf8)
        );
        assert_eq!(
            Reader::new(&[0, 1, 0]).string("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::NullCharacter)
        );
        // A BOM is kept, not stripped (MQTT-1.5.3-3).
        assert_eq!(
            Reader::new(&[0, 3, 0xEF, 0xBB, 0xBF]).string("t"),
            Ok("\u{FEFF}")
        );
    }

    #[test]
    fn packet_id_zero_is_refused_mqtt_2_3_1_1() {
        assert_eq!(
            Reader::new(&[0, 0]).packet_id("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::PacketIdZero)
        );
        assert_eq!(Reader::new(&[0x12, 0x34]).packet_id("t"), Ok(0x1234));
    }

    #[test]
    fn varints_are_minimal_mqtt_1_5_5_1() {
        let read = |b: &[u8]| Reader::new(b).varint("t").map_err(|e| e.kind());
        assert_eq!(read(&[0x00]), Ok(0));
        assert_eq!(read(&[0x7F]), Ok(127));
        assert_eq!(read(&[0x80, 0x01]), Ok(128));
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0x7F]), Ok(268_435_455));
        assert_eq!(read(&[0x80, 0x00]), Err(DecodeErrorKind::NonMinimalVarint));
        assert_eq!(
            read(&[0xFF, 0x80, 0x00]),
            Err(DecodeErrorKind::NonMinimalVarint)
        );
        assert_eq!(
            read(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeErrorKind::MalformedVarint)
        );
        assert_eq!(read(&[0x80]), Err(DecodeErrorKind::Truncated));
    }

    #[test]
    fn finish_refuses_trailing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.u8("t"), Ok(1));
        assert_eq!(
            r.finish("t").map_err(|e| e.kind()),
            Err(DecodeErrorKind::TrailingBytes)
        );
    }
}
