//! A durable session's record: what a restart needs to rebuild it (its outbound entries
//! and inbound packet ids are stored beside it, one entry each).

use crate::core::conn::PendingWill;
use crate::core::persist::codec::{
    DecodeError, Reader, WallClock, Writer, read_props, write_props,
};
use crate::core::session::Session;
use crate::core::subscription::SubOpts;
use crate::protocol::Will;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_secs: u32,
    /// The loop that held it when it was written.
    pub loop_index: u16,
    /// The listener its client last connected through.
    pub listener: u8,
    /// Who its client authenticated as.
    pub username: Option<Box<str>>,
    /// When the offline session expires, wall-clock ms (0: its client was connected when
    /// the record was written, or it never expires).
    pub expiry_due_wall_ms: u64,
    /// Its subscriptions, filter and options.
    pub subscriptions: Vec<(Box<str>, SubOpts)>,
    /// Its will: the connected client's, or a delayed one waiting (`due_ms` a wall-clock
    /// time; 0 while the client was connected).
    pub will: Option<PendingWill>,
}

impl SessionRecord {
    /// The record of `session`, held by loop `loop_index`, whose connected client has
    /// `will` (or whose delayed will waits in the session), its times made wall-clock
    /// times.
    pub fn of(
        session: &Session,
        loop_index: usize,
        will: Option<&PendingWill>,
        clock: WallClock,
    ) -> SessionRecord {
        let extras = session.extras();
        let delayed = extras.and_then(|e| e.delayed_will.as_ref());
        let mut will = will.or(delayed).cloned();
        if let Some(will) = will.as_mut().filter(|w| w.due_ms != 0) {
            will.due_ms = clock.to_wall(will.due_ms);
        }
        SessionRecord {
            expiry_secs: session.expiry_secs,
            loop_index: loop_index as u16,
            listener: session.listener,
            username: crate::core::access::username(session).map(Into::into),
            expiry_due_wall_ms: match session.expiry_due_ms() {
                0 => 0,
                due => clock.to_wall(due),
            },
            subscriptions: session
                .subscriptions
                .iter()
                .map(|(filter, opts)| (filter.into(), opts))
                .collect(),
            will,
        }
    }

    /// Encodes the record (`clock` converts the message expiry of the will's properties).
    pub fn encode(&self, clock: WallClock, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u8(super::codec::RECORD_VERSION);
        w.u32(self.expiry_secs);
        w.u16(self.loop_index);
        w.u8(self.listener);
        w.opt_str(self.username.as_deref());
        w.u64(self.expiry_due_wall_ms);
        w.u32(self.subscriptions.len() as u32);
        for (filter, opts) in &self.subscriptions {
            w.str(filter);
            w.u32(opts.bits());
        }
        match &self.will {
            None => w.u8(0),
            Some(will) => {
                w.u8(1);
                w.str(&will.will.topic);
                w.bytes(&will.will.payload);
                w.u8(will.will.qos.as_u8());
                w.u8(u8::from(will.will.retain));
                write_props(&mut w, will.props.as_deref(), clock);
                w.u64(will.expiry_secs.map_or(u64::MAX, u64::from));
                w.u32(will.delay_secs);
                w.u64(will.due_ms);
            }
        }
    }

    /// Reads what [`SessionRecord::encode`] wrote; its times are wall-clock times
    /// (`expiry_due_wall_ms`, the will's `due_ms`).
    pub fn decode(record: &[u8], clock: WallClock) -> Result<SessionRecord, DecodeError> {
        let mut r = Reader::new(record, "session record");
        r.version()?;
        let expiry_secs = r.u32()?;
        let loop_index = r.u16()?;
        let listener = r.u8()?;
        let username = r.opt_str()?.map(Into::into);
        let expiry_due_wall_ms = r.u64()?;
        let count = r.u32()? as usize;
        let mut subscriptions = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let filter: Box<str> = r.str()?.into();
            let opts = SubOpts::from_bits(r.u32()?).ok_or(DecodeError("session record"))?;
            subscriptions.push((filter, opts));
        }
        let will = if r.bool()? {
            let topic = r.str()?.to_owned();
            let payload = r.bytes()?.to_vec();
            let qos = r.qos()?;
            let retain = r.bool()?;
            let props = read_props(&mut r, clock)?;
            let expiry_secs = match r.u64()? {
                u64::MAX => None,
                secs => Some(u32::try_from(secs).map_err(|_| DecodeError("session record"))?),
            };
            let delay_secs = r.u32()?;
            let due_ms = r.u64()?;
            Some(PendingWill {
                will: Will {
                    topic,
                    payload,
                    qos,
                    retain,
                },
                props,
                expiry_secs,
                delay_secs,
                due_ms,
            })
        } else {
            None
        };
        r.end()?;
        Ok(SessionRecord {
            expiry_secs,
            loop_index,
            listener,
            username,
            expiry_due_wall_ms,
            subscriptions,
            will,
        })
    }
}
