//! store-choice: redb and fjall on the broker's persistence pattern.
//!
//! `cargo run --release -- <redb|fjall> <scenario> [--option value]...`
//!
//! Scenarios: fanin, async, fanout, churn, recovery, lock (see README.md). Every run works in
//! a fresh directory under `--dir` (default /tmp/store-choice), removes it at the end and
//! prints a last line `RESULT store=... scenario=... key=value ...` for scripts/run.py.

mod store;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use store::{Batch, Kind, Options, Res, Store, Table};

struct Args {
    kind: Kind,
    scenario: String,
    opts: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Res<Args> {
        let mut it = std::env::args().skip(1);
        let usage = "usage: store-choice <redb|fjall> <fanin|async|fanout|churn|recovery|lock> [--option value]...";
        let kind = Kind::parse(&it.next().ok_or(usage)?)?;
        let scenario = it.next().ok_or(usage)?;
        let mut opts = BTreeMap::new();
        while let Some(k) = it.next() {
            let k = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {k}"))?;
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            opts.insert(k.to_string(), v);
        }
        Ok(Args {
            kind,
            scenario,
            opts,
        })
    }

    fn num(&self, key: &str, default: u64) -> u64 {
        match self.opts.get(key) {
            Some(v) => v
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("--{key}: not a number: {v}")),
            None => default,
        }
    }

    fn str(&self, key: &str, default: &str) -> String {
        self.opts
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// The options to hand to a child process, with `--path`.
    fn child_args(&self, helper: &str, path: &Path) -> Vec<String> {
        let mut v = vec![self.kind.name().to_string(), helper.to_string()];
        for (k, val) in &self.opts {
            if k != "dir" && k != "keep" {
                v.push(format!("--{k}"));
                v.push(val.clone());
            }
        }
        v.push("--path".to_string());
        v.push(path.display().to_string());
        v
    }

    fn store_options(&self) -> Options {
        Options {
            cache_bytes: self.num("cache-mib", 64) << 20,
            sync_data: self.str("fjall-sync", "all") == "data",
            fjall_workers: self.num("fjall-workers", 2) as usize,
            redb_quick_repair: self.str("redb-quick-repair", "no") == "yes",
            fjall_journal_bytes: self.num("fjall-journal-mib", 0) << 20,
            fjall_memtable_bytes: self.num("fjall-memtable-mib", 0) << 20,
        }
    }
}

/// Collects `key=value` pairs for the RESULT line.
#[derive(Default)]
struct Report(Vec<(String, String)>);

impl Report {
    fn add(&mut self, k: &str, v: impl std::fmt::Display) {
        println!("  {k:<28} {v}");
        self.0.push((k.to_string(), v.to_string()));
    }
}

fn main() -> Res<()> {
    let args = Args::parse()?;
    match args.scenario.as_str() {
        // Helpers run in a child process by `lock` and `recovery`.
        "lockprobe" => return lockprobe(&args),
        "dirty-exit" => return dirty_exit(&args),
        "count" => return count(&args),
        _ => {}
    }
    let base = PathBuf::from(args.str("dir", "/tmp/store-choice"));
    let dir = base.join(format!(
        "{}-{}-{}",
        args.kind.name(),
        args.scenario,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!(
        "{} {} in {} (load average {})",
        args.kind.name(),
        args.scenario,
        dir.display(),
        loadavg()
    );
    let mut r = Report::default();
    r.add(
        "load_start",
        loadavg().split(' ').next().unwrap_or("?").to_string(),
    );
    let out = match args.scenario.as_str() {
        "fanin" => fanin(&args, &dir, &mut r, true),
        "async" => fanin(&args, &dir, &mut r, false),
        "fanout" => fanout(&args, &dir, &mut r),
        "churn" => churn(&args, &dir, &mut r),
        "recovery" => recovery(&args, &dir, &mut r),
        "lock" => lock(&args, &dir, &mut r),
        s => Err(format!("unknown scenario {s}").into()),
    };
    if args.str("keep", "no") != "yes" {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out?;
    r.add(
        "load_end",
        loadavg().split(' ').next().unwrap_or("?").to_string(),
    );
    r.add(
        "peak_rss_mib",
        format!("{:.1}", proc_status("VmHWM") as f64 / 1024.0),
    );
    let mut line = format!(
        "RESULT store={} scenario={}",
        args.kind.name(),
        args.scenario
    );
    for (k, v) in &args.opts {
        if k != "dir" {
            line.push_str(&format!(" opt_{k}={v}"));
        }
    }
    for (k, v) in &r.0 {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data: the same bytes for both stores.

fn msg_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn queue_key(session: u64, seq: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&session.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// message id, packet id, QoS: 11 bytes
fn queue_ref(id: u64) -> [u8; 11] {
    let mut v = [0; 11];
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8..10].copy_from_slice(&((id % 65535 + 1) as u16).to_be_bytes());
    v[10] = 1;
    v
}

/// A stored message: expiry (u32), QoS, topic length (u16), topic, payload. Payloads are
/// pseudo-random, different for every message and the same in every run: incompressible, so
/// fjall's LZ4 blocks gain nothing that real (often JSON) payloads might give them.
struct Bodies {
    payload_len: usize,
    buf: Vec<u8>,
}

impl Bodies {
    fn new(payload_len: usize) -> Bodies {
        Bodies {
            payload_len,
            buf: Vec::new(),
        }
    }

    fn body(&mut self, id: u64, publisher: u64) -> &[u8] {
        let topic = format!("sensors/{publisher:04}/temperature");
        self.buf.clear();
        self.buf.extend_from_slice(&0u32.to_be_bytes());
        self.buf.push(1);
        self.buf
            .extend_from_slice(&(topic.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(topic.as_bytes());
        random_bytes(&mut self.buf, id, self.payload_len);
        &self.buf
    }
}

/// Appends `len` pseudo-random bytes determined by `seed` (xorshift64*).
fn random_bytes(out: &mut Vec<u8>, seed: u64, len: usize) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let end = out.len() + len;
    while out.len() < end {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let n = (end - out.len()).min(8);
        out.extend_from_slice(&word[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// 1 (`sync = true`): batches of B messages from P publishers to one persistent subscriber's
/// queue, one durable commit (one fsync) per batch. 4 (`sync = false`): the same batches
/// committed without fsync, and a durable sync every `--flush-ms`.
fn fanin(a: &Args, dir: &Path, r: &mut Report, sync: bool) -> Res<()> {
    let batch_len = a.num("batch", 16);
    let payload = a.num("payload", 64) as usize;
    let publishers = a.num("publishers", 100);
    let seconds = a.num("seconds", 3);
    let max_msgs = a.num("max-msgs", 2_000_000);
    let flush_ms = a.num("flush-ms", 10);
    let mut s = store::open(a.kind, dir, &a.store_options())?;
    r.add("threads_open", proc_status("Threads"));
    let mut bodies = Bodies::new(payload);
    let mut b = Batch::default();
    let mut lat = Vec::new();
    let (mut id, mut syncs) = (0u64, 0u64);
    let io0 = proc_io();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut last_sync = start;
    while Instant::now() < end && id < max_msgs {
        b.clear();
        for _ in 0..batch_len {
            b.put(Table::Msgs, &msg_key(id), bodies.body(id, id % publishers));
            b.put(Table::Queue, &queue_key(0, id), &queue_ref(id));
            id += 1;
        }
        let t = Instant::now();
        s.commit(&b, sync)?;
        if !sync && t.duration_since(last_sync) >= Duration::from_millis(flush_ms) {
            s.sync()?;
            syncs += 1;
            last_sync = Instant::now();
        }
        lat.push(t.elapsed());
    }
    if !sync {
        s.sync()?;
        syncs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let io = proc_io().since(&io0);
    r.add("messages", id);
    r.add("msgs_per_s", format!("{:.0}", id as f64 / secs));
    if sync {
        r.add("fsyncs_per_s", format!("{:.0}", lat.len() as f64 / secs));
    } else {
        r.add("commits_per_s", format!("{:.0}", lat.len() as f64 / secs));
        r.add("syncs_per_s", format!("{:.0}", syncs as f64 / secs));
    }
    lat.sort();
    r.add("commit_p50_us", pct(&lat, 50.0).as_micros());
    r.add("commit_p99_us", pct(&lat, 99.0).as_micros());
    r.add(
        "commit_max_us",
        lat.last().copied().unwrap_or_default().as_micros(),
    );
    r.add("write_bytes_per_msg", io.write_bytes / id.max(1));
    r.add("threads_end", proc_status("Threads"));
    r.add("thread_names", thread_names());
    drop(s);
    Ok(())
}

/// 2: one message referenced by K queues, in one durable commit, `--repeat` times.
fn fanout(a: &Args, dir: &Path, r: &mut Report) -> Res<()> {
    let k = a.num("refs", 100);
    let repeat = a.num("repeat", 20);
    let payload = a.num("payload", 1024) as usize;
    let mut s = store::open(a.kind, dir, &a.store_options())?;
    let mut bodies = Bodies::new(payload);
    let mut b = Batch::default();
    let (mut lat, mut wchar, mut wbytes, mut grow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in 0..repeat {
        b.clear();
        b.put(Table::Msgs, &msg_key(id), bodies.body(id, 0));
        b.put(Table::Rc, &msg_key(id), &(k as u32).to_le_bytes());
        for session in 0..k {
            b.put(Table::Queue, &queue_key(session, id), &queue_ref(id));
        }
        let d0 = disk_usage(dir);
        let io0 = proc_io();
        let t = Instant::now();
        s.commit(&b, true)?;
        lat.push(t.elapsed());
        let io = proc_io().since(&io0);
        wchar.push(io.wchar);
        wbytes.push(io.write_bytes);
        grow.push(disk_usage(dir).allocated as i64 - d0.allocated as i64);
    }
    let mut sorted = lat.clone();
    sorted.sort();
    r.add("commit_p50_us", pct(&sorted, 50.0).as_micros());
    r.add(
        "commit_max_us",
        sorted.last().copied().unwrap_or_default().as_micros(),
    );
    r.add("first_commit_us", lat[0].as_micros());
    wchar.sort();
    wbytes.sort();
    grow.sort();
    r.add("wchar_per_commit", wchar[wchar.len() / 2]);
    r.add("write_bytes_per_commit", wbytes[wbytes.len() / 2]);
    r.add("disk_growth_per_commit", grow[grow.len() / 2]);
    r.add(
        "logical_bytes_per_commit",
        b.iter()
            .map(|(_, k, v)| k.len() + v.map_or(0, |v| v.len()))
            .sum::<usize>(),
    );
    r.add("disk_after", disk_usage(dir).allocated);
    drop(s);
    Ok(())
}

/// 3: steady state: every message is appended to `--refs` queues; reference j is acknowledged
/// (its queue entry deleted, the message's count written down, the body and count deleted
/// with the last one) (j + 1) × window / refs messages later. One durable commit per turn of
/// `--batch` new messages and the acknowledgements due by then.
fn churn(a: &Args, dir: &Path, r: &mut Report) -> Res<()> {
    let total = a.num("messages", 1_000_000);
    let sessions = a.num("sessions", 1000);
    let refs = a.num("refs", 2).max(1);
    let window = a.num("window", 10_000);
    let batch_len = a.num("batch", 256);
    let payload = a.num("payload", 1024) as usize;
    let max_seconds = a.num("max-seconds", 240);
    let mut s = store::open(a.kind, dir, &a.store_options())?;
    let mut bodies = Bodies::new(payload);
    let mut b = Batch::default();
    let mut fifos: Vec<VecDeque<(u64, u64, u64)>> = vec![VecDeque::new(); refs as usize];
    let mut remaining: Vec<u8> = Vec::with_capacity(total as usize);
    let mut seqs = vec![0u64; sessions as usize];
    let mut lat = Vec::new();
    let (mut id, mut before, mut t_steady) = (0u64, None, None);
    let mut checkpoints = Vec::new();
    let start = Instant::now();
    while id < total {
        if start.elapsed() > Duration::from_secs(max_seconds) {
            r.add("stopped_early_at", id);
            break;
        }
        b.clear();
        for _ in 0..batch_len.min(total - id) {
            b.put(Table::Msgs, &msg_key(id), bodies.body(id, id % 100));
            if refs > 1 {
                b.put(Table::Rc, &msg_key(id), &(refs as u32).to_le_bytes());
            }
            for j in 0..refs {
                let session = (id + j * (sessions / refs)) % sessions;
                let seq = seqs[session as usize];
                seqs[session as usize] += 1;
                b.put(Table::Queue, &queue_key(session, seq), &queue_ref(id));
                fifos[j as usize].push_back((id, session, seq));
            }
            remaining.push(refs as u8);
            id += 1;
        }
        for j in 0..refs {
            let lag = (j + 1) * window / refs;
            let fifo = &mut fifos[j as usize];
            while let Some(&(m, session, seq)) = fifo.front() {
                if m + lag > id {
                    break;
                }
                fifo.pop_front();
                b.del(Table::Queue, &queue_key(session, seq));
                let left = &mut remaining[m as usize];
                *left -= 1;
                if *left == 0 {
                    b.del(Table::Msgs, &msg_key(m));
                    if refs > 1 {
                        b.del(Table::Rc, &msg_key(m));
                    }
                } else {
                    b.put(Table::Rc, &msg_key(m), &(*left as u32).to_le_bytes());
                }
            }
        }
        let t = Instant::now();
        s.commit(&b, true)?;
        lat.push(t.elapsed());
        if before.is_none() && id >= window {
            before = Some(disk_usage(dir));
            t_steady = Some((Instant::now(), id));
        }
        if id % 100_000 < batch_len && id >= 100_000 {
            checkpoints.push(format!(
                "{}k:{:.1}",
                id / 1000,
                mib(disk_usage(dir).allocated)
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = disk_usage(dir);
    r.add("messages", id);
    r.add("msgs_per_s", format!("{:.0}", id as f64 / secs));
    if let Some((t, n)) = t_steady {
        r.add(
            "steady_msgs_per_s",
            format!("{:.0}", (id - n) as f64 / t.elapsed().as_secs_f64()),
        );
    }
    lat.sort();
    r.add("commit_p50_us", pct(&lat, 50.0).as_micros());
    r.add("commit_p99_us", pct(&lat, 99.0).as_micros());
    let before = before.unwrap_or_default();
    r.add("disk_before_mib", format!("{:.1}", mib(before.allocated)));
    r.add("disk_after_mib", format!("{:.1}", mib(after.allocated)));
    r.add("journal_after_mib", format!("{:.1}", mib(after.journal)));
    r.add("apparent_after_mib", format!("{:.1}", mib(after.apparent)));
    r.add("disk_checkpoints_mib", checkpoints.join(","));
    r.add("threads_end", proc_status("Threads"));
    // Give background work (fjall's flushes and compactions) a moment, then close and reopen.
    std::thread::sleep(Duration::from_secs(2));
    r.add(
        "disk_idle_2s_mib",
        format!("{:.1}", mib(disk_usage(dir).allocated)),
    );
    drop(s);
    r.add(
        "disk_closed_mib",
        format!("{:.1}", mib(disk_usage(dir).allocated)),
    );
    let t = Instant::now();
    let mut s = store::open(a.kind, dir, &a.store_options())?;
    let (n, _) = s.scan()?;
    r.add("reopen_scan_ms", t.elapsed().as_millis());
    r.add("entries_live", n);
    r.add(
        "entries_expected",
        fifos.iter().map(|f| f.len() as u64).sum::<u64>()
            + remaining.iter().filter(|&&c| c > 0).count() as u64 * if refs > 1 { 2 } else { 1 },
    );
    drop(s);
    r.add(
        "disk_reopened_mib",
        format!("{:.1}", mib(disk_usage(dir).allocated)),
    );
    Ok(())
}

/// 5: a store with `--retained` retained messages (topic → 100 B) and `--sessions` sessions
/// with `--queued` references each (to `sessions` message bodies of 100 B, 10 references
/// each), then, in this order: the first open after the clean close that follows the load
/// (page cache warm), a second open with this store's pages evicted from the page cache, an
/// open after a process that committed and exited without closing, and (fjall) an open after
/// the memtables were written out. Each open is followed by a full scan (what a broker loads).
fn recovery(a: &Args, dir: &Path, r: &mut Report) -> Res<()> {
    let retained = a.num("retained", 1_000_000);
    let sessions = a.num("sessions", 100_000);
    let queued = a.num("queued", 10);
    let per_commit = a.num("per-commit", 10_000) as usize;
    let o = a.store_options();
    let mut s = store::open(a.kind, dir, &o)?;
    let mut b = Batch::default();
    let mut value = Vec::with_capacity(100);
    let t = Instant::now();
    let flush = |s: &mut Box<dyn Store>, b: &mut Batch, force: bool| -> Res<()> {
        if b.len() >= per_commit || (force && b.len() > 0) {
            s.commit(b, true)?;
            b.clear();
        }
        Ok(())
    };
    for i in 0..retained {
        let topic = format!("site/{:03}/device/{:07}/state", i % 997, i);
        value.clear();
        random_bytes(&mut value, i ^ 0x5EED, 100);
        b.put(Table::Retained, topic.as_bytes(), &value);
        flush(&mut s, &mut b, false)?;
    }
    flush(&mut s, &mut b, true)?;
    let load_retained = t.elapsed();
    let d_retained = disk_usage(dir);
    let mut bodies = Bodies::new(100);
    let messages = sessions; // message bodies, each referenced `queued` times
    let t2 = Instant::now();
    for m in 0..messages {
        b.put(Table::Msgs, &msg_key(m), bodies.body(m, m % 100));
        b.put(Table::Rc, &msg_key(m), &(queued as u32).to_le_bytes());
        flush(&mut s, &mut b, false)?;
    }
    for sid in 0..sessions {
        let mut state = [0u8; 64];
        state[..8].copy_from_slice(&(1_800_000_000 + sid).to_be_bytes());
        b.put(
            Table::Sessions,
            format!("client-{sid:08}").as_bytes(),
            &state,
        );
        for j in 0..queued {
            let m = (sid * queued + j) % messages;
            b.put(Table::Queue, &queue_key(sid, j), &queue_ref(m));
        }
        flush(&mut s, &mut b, false)?;
    }
    flush(&mut s, &mut b, true)?;
    s.sync()?;
    let load_rest = t2.elapsed();
    let d_all = disk_usage(dir);
    let entries = retained + 2 * messages + sessions + sessions * queued;
    r.add("entries", entries);
    r.add(
        "load_s",
        format!("{:.1}", (load_retained + load_rest).as_secs_f64()),
    );
    r.add(
        "load_entries_per_s",
        format!(
            "{:.0}",
            entries as f64 / (load_retained + load_rest).as_secs_f64()
        ),
    );
    r.add("bytes_per_retained", d_retained.allocated / retained.max(1));
    r.add(
        "bytes_per_queued_ref",
        (d_all.allocated - d_retained.allocated) / (sessions * queued).max(1),
    );
    drop(s);
    let d_closed = disk_usage(dir);
    r.add("disk_closed_mib", format!("{:.1}", mib(d_closed.allocated)));
    r.add(
        "journal_closed_mib",
        format!("{:.1}", mib(d_closed.journal)),
    );
    r.add("bytes_per_entry_closed", d_closed.allocated / entries);

    let timed_open = |label: &str, r: &mut Report, cold: bool, entries: u64| -> Res<()> {
        if cold {
            evict_page_cache(dir)?;
        }
        let t = Instant::now();
        let mut s = store::open(a.kind, dir, &o)?;
        let open = t.elapsed();
        let (n, bytes) = s.scan()?;
        let all = t.elapsed();
        r.add(&format!("{label}_open_ms"), open.as_millis());
        r.add(&format!("{label}_open_scan_ms"), all.as_millis());
        if n != entries {
            return Err(
                format!("{label}: scanned {n} entries ({bytes} B), expected {entries}").into(),
            );
        }
        drop(s);
        Ok(())
    };
    timed_open("first", r, false, entries)?;
    timed_open("again_cold", r, true, entries)?;
    // A process that commits durably and exits without closing the store.
    let st = Command::new(std::env::current_exe()?)
        .args(a.child_args("dirty-exit", dir))
        .status()?;
    if !st.success() {
        return Err("dirty-exit child failed".into());
    }
    let entries = entries + 1;
    let timed_open_dirty = |r: &mut Report| -> Res<()> {
        let t = Instant::now();
        let mut s = store::open(a.kind, dir, &o)?;
        let open = t.elapsed();
        let (n, _) = s.scan()?;
        r.add("dirty_open_ms", open.as_millis());
        r.add("dirty_open_scan_ms", t.elapsed().as_millis());
        if n != entries {
            return Err(format!("dirty: scanned {n} entries, expected {entries}").into());
        }
        Ok(())
    };
    timed_open_dirty(r)?;
    // fjall: with the memtables written out before the close, no journal to replay.
    let mut s = store::open(a.kind, dir, &o)?;
    s.flush_memtables()?;
    drop(s);
    let d = disk_usage(dir);
    r.add("disk_flushed_mib", format!("{:.1}", mib(d.allocated)));
    r.add("journal_flushed_mib", format!("{:.1}", mib(d.journal)));
    r.add(
        "bytes_per_entry_flushed_no_journal",
        (d.allocated - d.journal) / entries,
    );
    timed_open("flushed", r, false, entries)?;
    Ok(())
}

/// Child of `recovery`: one durable commit, then exit without dropping the store.
fn dirty_exit(a: &Args) -> Res<()> {
    let dir = PathBuf::from(a.str("path", ""));
    let mut s = store::open(a.kind, &dir, &a.store_options())?;
    let mut b = Batch::default();
    b.put(Table::Retained, b"dirty/exit", b"one more");
    s.commit(&b, true)?;
    std::mem::forget(s);
    std::process::exit(0);
}

/// 6: a second process opening the same store while this one has it open must fail.
fn lock(a: &Args, dir: &Path, r: &mut Report) -> Res<()> {
    let probe = || -> Res<String> {
        let out = Command::new(std::env::current_exe()?)
            .args(a.child_args("lockprobe", dir))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace(' ', "_"))
    };
    let s = store::open(a.kind, dir, &a.store_options())?;
    r.add("second_process_while_open", probe()?);
    drop(s);
    r.add("second_process_after_close", probe()?);
    Ok(())
}

fn lockprobe(a: &Args) -> Res<()> {
    let dir = PathBuf::from(a.str("path", ""));
    let t = Instant::now();
    match store::open(a.kind, &dir, &a.store_options()) {
        Ok(_) => println!("opened"),
        Err(e) => println!("refused({}ms):{e}", t.elapsed().as_millis()),
    }
    Ok(())
}

/// Opens the store at `--path` and prints its number of entries (for experiments by hand).
fn count(a: &Args) -> Res<()> {
    let dir = PathBuf::from(a.str("path", ""));
    match store::open(a.kind, &dir, &a.store_options()).and_then(|mut s| s.scan()) {
        Ok((n, _)) => println!("entries {n}"),
        Err(e) => println!("error: {e}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measuring.

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i]
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A field of /proc/self/status, in its unit (kB for memory).
fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn thread_names() -> String {
    let mut names = BTreeMap::<String, u32>::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let n = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            *names.entry(n.trim().replace(' ', "_")).or_default() += 1;
        }
    }
    names
        .iter()
        .map(|(n, c)| format!("{n}x{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default, Clone, Copy)]
struct Io {
    wchar: u64,
    write_bytes: u64,
}

impl Io {
    fn since(&self, before: &Io) -> Io {
        Io {
            wchar: self.wchar - before.wchar,
            write_bytes: self.write_bytes - before.write_bytes,
        }
    }
}

/// This process's write counters: `wchar` (bytes passed to write calls), `write_bytes` (bytes
/// sent to the block layer on its behalf).
fn proc_io() -> Io {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
            .unwrap_or(0)
    };
    Io {
        wchar: get("wchar:"),
        write_bytes: get("write_bytes:"),
    }
}

#[derive(Default, Clone, Copy)]
struct Usage {
    /// sum of file lengths
    apparent: u64,
    /// blocks actually allocated (fjall preallocates its journal sparsely)
    allocated: u64,
    /// of which in fjall's journal files (`*.jnl`)
    journal: u64,
}

fn disk_usage(dir: &Path) -> Usage {
    use std::os::unix::fs::MetadataExt;
    let mut u = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                u.apparent += m.len();
                u.allocated += m.blocks() * 512;
                if e.path().extension().is_some_and(|x| x == "jnl") {
                    u.journal += m.blocks() * 512;
                }
            }
        }
    }
    u
}

/// Drops this store's files (and no others) from the page cache: POSIX_FADV_DONTNEED on each.
fn evict_page_cache(dir: &Path) -> Res<()> {
    use std::os::fd::AsRawFd;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let f = std::fs::File::open(e.path())?;
                f.sync_all()?;
                // SAFETY: a valid open descriptor; the call only advises the kernel.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
    Ok(())
}
