//! The tables of the redb file, their keys, and how the shared ledger drives them.

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition, Value,
    WriteTransaction,
};

use super::At;
use crate::ledger::{Garbage, Ledger, Named, Outbound, Scan, Tables};
use crate::{Recovered, StoreError};

pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub(super) const OUTBOUND: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbound");
pub(super) const INBOUND: TableDefinition<&[u8], ()> = TableDefinition::new("inbound");
pub(super) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
pub(super) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
pub(super) const ROUTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("routes");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The `meta` key of the format version.
pub(super) const FORMAT_VERSION_KEY: &str = "format_version";
/// The `meta` key of the high-water mark of message ids.
const HIGH_WATER_KEY: &str = "max_message_id";

/// Bytes of the client id's length at the start of an outbound or inbound key.
const CLIENT_ID_LENGTH_BYTES: usize = 4;
/// Bytes of a message id, a sequence number, a packet id and a ticket in keys and values.
const MESSAGE_ID_BYTES: usize = 8;
const SEQ_BYTES: usize = 8;
const PACKET_ID_BYTES: usize = 2;
const TICKET_BYTES: usize = 4;
const ROUTE_KEY_BYTES: usize = MESSAGE_ID_BYTES + TICKET_BYTES;

/// A table keyed by a name (`sessions`, `retained`).
type NamedTable<'t> = Table<'t, &'static str, &'static [u8]>;
/// A table keyed by a client's entry key (`outbound`, `inbound`).
type ClientTable<'t, V> = Table<'t, &'static [u8], V>;
/// An outbound entry about to be written: the table, the key, the value buffer.
type OutboundEntry<'a, 't> = (
    &'a mut ClientTable<'t, &'static [u8]>,
    &'a [u8],
    &'a mut Vec<u8>,
);

/// Buffers for encoded keys and values, kept between ops for their capacity.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Feeds every entry of the file to a [`Scan`] in the order it wants (`copy`: see
/// [`Scan::new`]).
pub(super) fn scan(
    db: &Database,
    path: &Path,
    copy: bool,
) -> Result<(Recovered, Ledger, Garbage), StoreError> {
    let tx = db.begin_read().at(path)?;
    let mut scan = Scan::new(copy);
    each(&tx, SESSIONS, path, |client_id, record| {
        scan.session(client_id, record);
        Ok(())
    })?;
    each(&tx, OUTBOUND, path, |key, value| {
        let (client_id, seq) = split_client_key(key, path, "outbound")?;
        let (message, meta) = split_outbound_value(value, path)?;
        scan.outbound(client_id, u64::from_be_bytes(seq), message, meta);
        Ok(())
    })?;
    each(&tx, INBOUND, path, |key, ()| {
        let (client_id, packet_id) = split_client_key(key, path, "inbound")?;
        scan.inbound(client_id, u16::from_be_bytes(packet_id));
        Ok(())
    })?;
    each(&tx, ROUTES, path, |key, record| {
        let (message, ticket) = split_route_key(key, path)?;
        scan.route(message, ticket, record);
        Ok(())
    })?;
    each(&tx, RETAINED, path, |topic, body| {
        scan.retained(topic, body);
        Ok(())
    })?;
    each(&tx, MESSAGES, path, |id, body| {
        scan.message(id, body);
        Ok(())
    })?;
    let high_water = meta_value(&tx.open_table(META).at(path)?, HIGH_WATER_KEY, path)?;
    Ok(scan.finish(high_water))
}

/// Calls `visit` with every entry of a table, in key order.
fn each<K: Key + 'static, V: Value + 'static>(
    tx: &ReadTransaction,
    definition: TableDefinition<K, V>,
    path: &Path,
    mut visit: impl for<'a> FnMut(K::SelfType<'a>, V::SelfType<'a>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for entry in tx.open_table(definition).at(path)?.iter().at(path)? {
        let (key, value) = entry.at(path)?;
        visit(key.value(), value.value())?;
    }
    Ok(())
}

/// A value of the `meta` table (0 if it has none).
pub(super) fn meta_value(
    meta: &impl ReadableTable<&'static str, u64>,
    key: &str,
    path: &Path,
) -> Result<u64, StoreError> {
    Ok(meta.get(key).at(path)?.map_or(0, |value| value.value()))
}

/// The tables within one write transaction, each opened at its first use.
pub(super) struct RedbTables<'t> {
    tx: &'t WriteTransaction,
    path: &'t Path,
    scratch: &'t mut Scratch,
    sessions: Option<NamedTable<'t>>,
    retained: Option<NamedTable<'t>>,
    outbound: Option<ClientTable<'t, &'static [u8]>>,
    inbound: Option<ClientTable<'t, ()>>,
    messages: Option<Table<'t, u64, &'static [u8]>>,
    routes: Option<Table<'t, &'static [u8], &'static [u8]>>,
    meta: Option<Table<'t, &'static str, u64>>,
}

impl<'t> RedbTables<'t> {
    pub(super) fn new(tx: &'t WriteTransaction, path: &'t Path, scratch: &'t mut Scratch) -> Self {
        RedbTables {
            tx,
            path,
            scratch,
            sessions: None,
            retained: None,
            outbound: None,
            inbound: None,
            messages: None,
            routes: None,
            meta: None,
        }
    }

    fn named(&mut self, table: Named) -> Result<&mut NamedTable<'t>, StoreError> {
        match table {
            Named::Sessions => open(&mut self.sessions, self.tx, SESSIONS, self.path),
            Named::Retained => open(&mut self.retained, self.tx, RETAINED, self.path),
        }
    }

    /// The outbound table, the key of entry `seq` of a client, and the value buffer.
    fn outbound_entry(
        &mut self,
        client_id: &str,
        seq: u64,
    ) -> Result<OutboundEntry<'_, 't>, StoreError> {
        let Scratch { key, value } = &mut *self.scratch;
        client_key(key, client_id, &seq.to_be_bytes(), self.path)?;
        let table = open(&mut self.outbound, self.tx, OUTBOUND, self.path)?;
        Ok((table, key, value))
    }

    /// The inbound table and the key of a client's packet id.
    fn inbound_entry(
        &mut self,
        client_id: &str,
        packet_id: u16,
    ) -> Result<(&mut ClientTable<'t, ()>, &[u8]), StoreError> {
        let key = &mut self.scratch.key;
        client_key(key, client_id, &packet_id.to_be_bytes(), self.path)?;
        let table = open(&mut self.inbound, self.tx, INBOUND, self.path)?;
        Ok((table, key))
    }
}

/// The table in `slot`, opened in `tx` if it is not yet.
fn open<'s, 't, K: Key + 'static, V: Value + 'static>(
    slot: &'s mut Option<Table<'t, K, V>>,
    tx: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    path: &Path,
) -> Result<&'s mut Table<'t, K, V>, StoreError> {
    let table = match slot.take() {
        Some(table) => table,
        None => tx.open_table(definition).at(path)?,
    };
    Ok(slot.insert(table))
}

impl Tables for RedbTables<'_> {
    type Error = StoreError;

    fn put_named(&mut self, table: Named, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path;
        self.named(table)?.insert(name, bytes).at(path)?;
        Ok(())
    }

    fn delete_named(&mut self, table: Named, name: &str) -> Result<(), StoreError> {
        let path = self.path;
        self.named(table)?.remove(name).at(path)?;
        Ok(())
    }

    fn delete_client_outbound(
        &mut self,
        client_id: &str,
        mut release: impl FnMut(u64),
    ) -> Result<(), StoreError> {
        let split = client_range::<SEQ_BYTES>(&mut self.scratch.key, client_id, self.path)?;
        let (low, high) = self.scratch.key.split_at(split);
        let table = open(&mut self.outbound, self.tx, OUTBOUND, self.path)?;
        let mut malformed = false;
        table
            .retain_in(low..=high, |_, value| {
                match value.first_chunk::<MESSAGE_ID_BYTES>() {
                    Some(message) => release(u64::from_be_bytes(*message)),
                    None => malformed = true,
                }
                false
            })
            .at(self.path)?;
        if malformed {
            return Err(malformed_entry(self.path, "outbound value"));
        }
        Ok(())
    }

    fn delete_client_inbound(&mut self, client_id: &str) -> Result<(), StoreError> {
        let split = client_range::<PACKET_ID_BYTES>(&mut self.scratch.key, client_id, self.path)?;
        let (low, high) = self.scratch.key.split_at(split);
        let table = open(&mut self.inbound, self.tx, INBOUND, self.path)?;
        table.retain_in(low..=high, |_, ()| false).at(self.path)
    }

    fn put_message(&mut self, id: u64, body: &[u8]) -> Result<bool, StoreError> {
        let table = open(&mut self.messages, self.tx, MESSAGES, self.path)?;
        if table.get(id).at(self.path)?.is_some() {
            return Ok(false);
        }
        table.insert(id, body).at(self.path)?;
        Ok(true)
    }

    fn delete_message(&mut self, id: u64) -> Result<bool, StoreError> {
        let table = open(&mut self.messages, self.tx, MESSAGES, self.path)?;
        Ok(table.remove(id).at(self.path)?.is_some())
    }

    fn put_outbound(&mut self, entry: Outbound<'_>) -> Result<Option<u64>, StoreError> {
        let path = self.path;
        let (table, key, value) = self.outbound_entry(entry.client_id, entry.seq)?;
        value.clear();
        value.extend_from_slice(&entry.message.to_be_bytes());
        value.extend_from_slice(entry.meta);
        let old = table.insert(key, value.as_slice()).at(path)?;
        old.map(|old| Ok(split_outbound_value(old.value(), path)?.0))
            .transpose()
    }

    fn delete_outbound(&mut self, client_id: &str, seq: u64) -> Result<Option<u64>, StoreError> {
        let path = self.path;
        let (table, key, _) = self.outbound_entry(client_id, seq)?;
        let old = table.remove(key).at(path)?;
        old.map(|old| Ok(split_outbound_value(old.value(), path)?.0))
            .transpose()
    }

    fn put_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), StoreError> {
        let path = self.path;
        let (table, key) = self.inbound_entry(client_id, packet_id)?;
        table.insert(key, ()).at(path)?;
        Ok(())
    }

    fn delete_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), StoreError> {
        let path = self.path;
        let (table, key) = self.inbound_entry(client_id, packet_id)?;
        table.remove(key).at(path)?;
        Ok(())
    }

    fn put_route(&mut self, message: u64, ticket: u32, record: &[u8]) -> Result<bool, StoreError> {
        let table = open(&mut self.routes, self.tx, ROUTES, self.path)?;
        let key = route_key(message, ticket);
        Ok(table
            .insert(key.as_slice(), record)
            .at(self.path)?
            .is_none())
    }

    fn delete_route(&mut self, message: u64, ticket: u32) -> Result<bool, StoreError> {
        let table = open(&mut self.routes, self.tx, ROUTES, self.path)?;
        let key = route_key(message, ticket);
        Ok(table.remove(key.as_slice()).at(self.path)?.is_some())
    }

    fn set_high_water(&mut self, id: u64) -> Result<(), StoreError> {
        let table = open(&mut self.meta, self.tx, META, self.path)?;
        table.insert(HIGH_WATER_KEY, id).at(self.path)?;
        Ok(())
    }
}

/// Writes the key of a client's entry: its id's length, its id, then `tail`.
fn client_key(
    buf: &mut Vec<u8>,
    client_id: &str,
    tail: &[u8],
    path: &Path,
) -> Result<(), StoreError> {
    let length = u32::try_from(client_id.len()).map_err(|_| StoreError::Io {
        path: path.to_owned(),
        detail: format!(
            "a client id of {} bytes is too long to store",
            client_id.len()
        ),
    })?;
    buf.clear();
    buf.extend_from_slice(&length.to_be_bytes());
    buf.extend_from_slice(client_id.as_bytes());
    buf.extend_from_slice(tail);
    Ok(())
}

/// Writes the first and last keys of a client's entries with an `N`-byte tail, one after
/// the other; where the second starts.
fn client_range<const N: usize>(
    buf: &mut Vec<u8>,
    client_id: &str,
    path: &Path,
) -> Result<usize, StoreError> {
    client_key(buf, client_id, &[u8::MIN; N], path)?;
    let split = buf.len();
    buf.extend_from_within(..split - N);
    buf.extend_from_slice(&[u8::MAX; N]);
    Ok(split)
}

/// A client's entry key: the client id and the `N`-byte tail.
fn split_client_key<'k, const N: usize>(
    key: &'k [u8],
    path: &Path,
    table: &str,
) -> Result<(&'k str, [u8; N]), StoreError> {
    let split = || {
        let (length, rest) = key.split_first_chunk::<CLIENT_ID_LENGTH_BYTES>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        let (client_id, tail) = rest.split_at_checked(length)?;
        Some((
            std::str::from_utf8(client_id).ok()?,
            <[u8; N]>::try_from(tail).ok()?,
        ))
    };
    split().ok_or_else(|| malformed_entry(path, &format!("{table} key")))
}

/// An outbound value: the message id and the meta.
fn split_outbound_value<'v>(value: &'v [u8], path: &Path) -> Result<(u64, &'v [u8]), StoreError> {
    match value.split_first_chunk::<MESSAGE_ID_BYTES>() {
        Some((message, meta)) => Ok((u64::from_be_bytes(*message), meta)),
        None => Err(malformed_entry(path, "outbound value")),
    }
}

fn route_key(message: u64, ticket: u32) -> [u8; ROUTE_KEY_BYTES] {
    let mut key = [0; ROUTE_KEY_BYTES];
    key[..MESSAGE_ID_BYTES].copy_from_slice(&message.to_be_bytes());
    key[MESSAGE_ID_BYTES..].copy_from_slice(&ticket.to_be_bytes());
    key
}

fn split_route_key(key: &[u8], path: &Path) -> Result<(u64, u32), StoreError> {
    let split = || {
        let (message, ticket) = key.split_first_chunk::<MESSAGE_ID_BYTES>()?;
        let ticket = <[u8; TICKET_BYTES]>::try_from(ticket).ok()?;
        Some((u64::from_be_bytes(*message), u32::from_be_bytes(ticket)))
    };
    split().ok_or_else(|| malformed_entry(path, "route key"))
}

fn malformed_entry(path: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("a malformed {what}"),
    }
}

pub(super) fn closed(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        detail: "the store is closed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_round_trip_and_bound_the_client_s_range() {
        let path = Path::new("/x");
        let mut buf = Vec::new();
        client_key(&mut buf, "ab", &7u64.to_be_bytes(), path).expect("key");
        let (client_id, seq) = split_client_key::<SEQ_BYTES>(&buf, path, "t").expect("split");
        assert_eq!((client_id, u64::from_be_bytes(seq)), ("ab", 7));
        let key = buf.clone();
        let split = client_range::<SEQ_BYTES>(&mut buf, "ab", path).expect("range");
        let (low, high) = buf.split_at(split);
        assert!(low <= key.as_slice() && key.as_slice() <= high);
        let high = high.to_vec();
        client_key(&mut buf, "abc", &[0; SEQ_BYTES], path).expect("key");
        assert!(buf > high, "another client's keys are outside the range");
        assert!(split_client_key::<SEQ_BYTES>(&key[..key.len() - 1], path, "t").is_err());
        let route = route_key(3, 4);
        assert_eq!(split_route_key(&route, path).expect("route"), (3, 4));
    }
}
