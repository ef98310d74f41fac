//! sled 0.34: one tree, keys prefixed by table (`e` + revision BE, `m` + name; format 1 also had
//! `o` + object key), so one `apply_batch` is one atomic write.
//!
//! Events are packed: the value under `e` + revision is a *record* holding that event and the
//! ones after it written in the same batch, up to [`RECORD_BYTES`] (a record of one event is the
//! bare envelope, as format 1 stored every event; see [`pack`]). Each tree insert costs sled
//! about the same whatever its size (it logs a fragment and, every few inserts, the whole leaf),
//! so fewer, larger values cost less CPU per event (`benches/store.rs`, 256 writers: the CPU
//! per create of the thread applying the batches 9–10 µs with one value per event, ~5.5 µs
//! with 3 KiB records, ~5 with 6 KiB). Records stay small for two reasons: memory (sled held
//! ~100 B more per object with 6 KiB records than with 3 KiB ones, which held no more than one
//! value per event), and a leaf holds up to 17 values while sled writes a leaf of more than
//! 128 KiB (a quarter of its 512 KiB segment) as a blob file of its own, which then needs an
//! fsync of its own.
//!
//! Durability: sled's own `flush` is not enough. On Linux it ends with `sync_file_range` on its
//! log, which neither flushes the device's write cache nor the file's metadata (its size, when
//! the log grew), and it never fsyncs the blob files it writes for large pages nor the `blobs`
//! directory (sled 0.34.7 `pagecache/iobuf.rs`, `pagecache/blob_io.rs`). It survives SIGKILL
//! (the page cache does), not a power cut. So a durable group commit here is: `flush`, then
//! `fdatasync` of sled's `db` file, then `fsync` of every blob file not yet synced and of the
//! `blobs` directory.

use std::path::{Path, PathBuf};

use super::{corrupt, rev_bytes, rev_from, Backend, BackendError, BackendResult, Batch};
use crate::store::Revision;

pub struct SledBackend {
    db: sled::Db,
    path: PathBuf,
    /// Our own handle on sled's data file, to fdatasync it (see the module comment).
    db_file: std::fs::File,
    /// Blob files already fsynced.
    synced_blobs: std::sync::Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
}

fn io(e: sled::Error) -> BackendError {
    match e {
        sled::Error::Corruption { at, bt: _ } => corrupt(
            "sled reports corruption".to_string(),
            format!(
                "sled log, {}",
                at.map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| "unknown offset".into())
            ),
        ),
        other => BackendError::Io(other.to_string()),
    }
}

/// A record is closed before it would exceed this many bytes (an event larger than that is a
/// record of its own); see the module comment for the measurements behind the size.
const RECORD_BYTES: usize = 3 * 1024;

/// First byte of a record of several events. An envelope starts with its format byte (1, see
/// `codec`), so a value is either a lone envelope or, after this byte, `count: u32 LE` and
/// `count` times `revision: u64 LE, len: u32 LE, envelope`.
const PACKED: u8 = 0xB5;

/// The record holding `events` (consecutive revisions of one batch, at least one).
fn pack(mut events: Vec<(Revision, Vec<u8>)>) -> Vec<u8> {
    if events.len() == 1 {
        return events.pop().expect("one event").1;
    }
    let size = events.iter().map(|(_, e)| 12 + e.len()).sum::<usize>();
    let mut out = Vec::with_capacity(5 + size);
    out.push(PACKED);
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for (rev, e) in &events {
        out.extend_from_slice(&rev.to_le_bytes());
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// The events of the record stored under `first` (see [`pack`]), in order.
fn unpack(first: Revision, value: &[u8]) -> BackendResult<Vec<(Revision, &[u8])>> {
    if value.first() != Some(&PACKED) {
        return Ok(vec![(first, value)]);
    }
    let damaged = |what: &str| {
        corrupt(
            format!("the record of events from revision {first} is damaged: {what}"),
            format!("sled events, record {first}"),
        )
    };
    let take = |at: &mut usize, n: usize| -> BackendResult<&[u8]> {
        let bytes = value
            .get(*at..*at + n)
            .ok_or_else(|| damaged(&format!("it ends at byte {}", value.len())))?;
        *at += n;
        Ok(bytes)
    };
    let mut at = 1;
    let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let rev = u64::from_le_bytes(take(&mut at, 8)?.try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
        out.push((rev, take(&mut at, len as usize)?));
    }
    match out.first() {
        Some((r, _)) if *r == first && at == value.len() => Ok(out),
        Some((r, _)) if *r != first => Err(damaged(&format!("its first event is {r}"))),
        _ => Err(damaged("its length does not match its events")),
    }
}

fn ekey(rev: Revision) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&rev_bytes(rev));
    k
}

impl SledBackend {
    /// Opens (or creates) the store directory. `cache_bytes` bounds sled's page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> BackendResult<SledBackend> {
        super::create_atomically(path, |tmp| {
            let db = sled::Config::new().path(tmp).open().map_err(io)?;
            db.flush().map_err(io)?;
            // `fdatasync` what sled's flush leaves unsynced, then let it go before the rename.
            for entry in std::fs::read_dir(tmp)
                .map_err(|e| BackendError::Io(e.to_string()))?
                .flatten()
            {
                if entry.path().is_file() {
                    std::fs::File::open(entry.path())
                        .and_then(|f| f.sync_all())
                        .map_err(|e| BackendError::Io(e.to_string()))?;
                }
            }
            drop(db);
            Ok(())
        })?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes as u64)
            // Durability comes from our own flush per group commit (relaxed mode: the store's
            // sync thread, once a second). sled's own background flush (every 500 ms by
            // default) ran concurrently with the committer's and stalled it: a 2–3 ms flush a
            // few times a second, which every writer of the group waited for (64 writers over
            // HTTP: 3–4 such commits per 32k creates with it, ~1 without).
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Corruption { .. } => io(e),
                other => BackendError::Io(format!(
                    "cannot open sled store at {}: {other}",
                    path.display()
                )),
            })?;
        let db_file = std::fs::File::open(path.join("db")).map_err(|e| {
            BackendError::Io(format!("cannot open {}: {e}", path.join("db").display()))
        })?;
        let backend = SledBackend {
            db,
            path: path.to_path_buf(),
            db_file,
            synced_blobs: Default::default(),
        };
        backend.fsync_files()?;
        Ok(backend)
    }

    /// The key of the record that would hold revision `rev`: the last record starting at or
    /// before it (records never overlap), else `rev`'s own key.
    fn record_start(&self, rev: Revision) -> BackendResult<[u8; 9]> {
        match self.db.range(ekey(0)..=ekey(rev)).next_back() {
            Some(item) => {
                let (k, _) = item.map_err(io)?;
                Ok(ekey(rev_from(&k[1..], "sled events")?))
            }
            None => Ok(ekey(rev)),
        }
    }

    /// What `flush` leaves undone: fdatasync the data file, fsync new blob files and their
    /// directory.
    fn fsync_files(&self) -> BackendResult<()> {
        let err = |what: &str, e: std::io::Error| {
            BackendError::Io(format!(
                "fsync of {what} in {} failed: {e}",
                self.path.display()
            ))
        };
        self.db_file.sync_data().map_err(|e| err("db", e))?;
        let blobs = self.path.join("blobs");
        let Ok(dir) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = false;
        for entry in dir.flatten() {
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            match std::fs::File::open(entry.path()) {
                Ok(f) => f.sync_all().map_err(|e| err("a blob", e))?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err("a blob", e)),
            }
            synced.insert(name);
            new = true;
        }
        if new {
            std::fs::File::open(&blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("blobs/", e))?;
        }
        Ok(())
    }
}

impl Backend for SledBackend {
    fn describe(&self) -> String {
        format!("sled at {}", self.path.display())
    }

    fn write(&self, batch: Batch, sync: bool) -> BackendResult<()> {
        let mut b = sled::Batch::default();
        // Log retention drops events, some of them inside records: rewrite those records
        // without them, under their new first revision (one atomic batch with the rest).
        if !batch.delete_events.is_empty() {
            let doomed: std::collections::BTreeSet<Revision> =
                batch.delete_events.iter().copied().collect();
            let (lo, hi) = (
                *doomed.first().expect("some"),
                *doomed.last().expect("some"),
            );
            for item in self.db.range(self.record_start(lo)?..=ekey(hi)) {
                let (k, v) = item.map_err(io)?;
                let first = rev_from(&k[1..], "sled events")?;
                let events = unpack(first, &v)?;
                if !events.iter().any(|(r, _)| doomed.contains(r)) {
                    continue;
                }
                b.remove(k);
                let kept: Vec<(Revision, Vec<u8>)> = events
                    .into_iter()
                    .filter(|(r, _)| !doomed.contains(r))
                    .map(|(r, e)| (r, e.to_vec()))
                    .collect();
                if let Some((first, _)) = kept.first() {
                    b.insert(&ekey(*first)[..], pack(kept));
                }
            }
        }
        let mut record: Vec<(Revision, Vec<u8>)> = Vec::new();
        let mut size = 0;
        for (rev, bytes) in batch.put_events {
            if !record.is_empty() && size + bytes.len() > RECORD_BYTES {
                let first = record[0].0;
                b.insert(&ekey(first)[..], pack(std::mem::take(&mut record)));
                size = 0;
            }
            size += bytes.len();
            record.push((rev, bytes));
        }
        if !record.is_empty() {
            b.insert(&ekey(record[0].0)[..], pack(record));
        }
        for (name, v) in batch.meta {
            let mut key = vec![b'm'];
            key.extend_from_slice(name.as_bytes());
            b.insert(key, &v.to_be_bytes()[..]);
        }
        self.db.apply_batch(b).map_err(io)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> BackendResult<()> {
        self.db.flush().map_err(io)?;
        self.fsync_files()
    }

    fn get_event(&self, revision: Revision) -> BackendResult<Option<Vec<u8>>> {
        let mut found = None;
        self.scan_events(revision, revision, &mut |_, bytes| {
            found = Some(bytes.to_vec());
            Ok(false)
        })?;
        Ok(found)
    }

    fn scan_events(
        &self,
        from: Revision,
        to: Revision,
        f: &mut dyn FnMut(Revision, &[u8]) -> BackendResult<bool>,
    ) -> BackendResult<()> {
        if from > to {
            return Ok(());
        }
        for item in self.db.range(self.record_start(from)?..=ekey(to)) {
            let (k, v) = item.map_err(io)?;
            let first = rev_from(&k[1..], "sled events")?;
            for (rev, bytes) in unpack(first, &v)? {
                if rev > to {
                    return Ok(());
                }
                if rev >= from && !f(rev, bytes)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn migrate_from_format_1(&self) -> BackendResult<()> {
        let mut b = sled::Batch::default();
        for item in self.db.scan_prefix(b"o") {
            b.remove(item.map_err(io)?.0);
        }
        b.insert(&b"mformat"[..], &2u64.to_be_bytes()[..]);
        self.db.apply_batch(b).map_err(io)?;
        self.sync()
    }

    fn get_meta(&self, name: &str) -> BackendResult<Option<u64>> {
        let mut key = vec![b'm'];
        key.extend_from_slice(name.as_bytes());
        match self.db.get(key).map_err(io)? {
            None => Ok(None),
            Some(v) => rev_from(&v, &format!("meta table, key {name}")).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An envelope-like event (envelopes start with their format byte, 1) of `len` bytes.
    fn event(rev: Revision, len: usize) -> Vec<u8> {
        let mut e = vec![1u8];
        e.extend(std::iter::repeat_n((rev % 251) as u8, len - 1));
        e
    }

    fn all(b: &SledBackend, from: Revision, to: Revision) -> Vec<(Revision, Vec<u8>)> {
        let mut out = Vec::new();
        b.scan_events(from, to, &mut |r, e| {
            out.push((r, e.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let one = vec![(7, event(7, 100))];
        assert_eq!(
            pack(one.clone()),
            one[0].1,
            "a lone event is its bare envelope"
        );
        assert_eq!(unpack(7, &one[0].1).unwrap(), vec![(7, &one[0].1[..])]);
        let many: Vec<_> = (7..10).map(|r| (r, event(r, 50 + r as usize))).collect();
        let record = pack(many.clone());
        let back: Vec<_> = unpack(7, &record)
            .unwrap()
            .into_iter()
            .map(|(r, e)| (r, e.to_vec()))
            .collect();
        assert_eq!(back, many);
        for cut in [1, 5, 20, record.len() - 1] {
            let err = unpack(7, &record[..cut]).unwrap_err();
            assert!(
                matches!(&err, BackendError::Corrupt { what, .. } if what.contains("revision 7")),
                "{err:?}"
            );
        }
        assert!(matches!(
            unpack(8, &record),
            Err(BackendError::Corrupt { .. })
        ));
    }

    /// Batches become records; reads find every event inside them, from any revision; retention
    /// drops events from the middle, the start and the whole of records.
    #[test]
    fn events_in_records_are_read_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let b = SledBackend::open(&dir.path().join("sled"), 1 << 20).unwrap();
        // 1: a lone write (bare envelope); 2..=41: one batch of 40 events of ~1.1 KiB (several
        // records); 42: a large event, a record of its own; 43..=45: a small batch.
        let sizes = |r: Revision| if r == 42 { 3 * RECORD_BYTES } else { 1100 };
        let mut expected = Vec::new();
        for batch in [1..=1, 2..=41, 42..=42, 43..=45] {
            let put_events: Vec<_> = batch.map(|r| (r, event(r, sizes(r)))).collect();
            expected.extend(put_events.clone());
            b.write(
                Batch {
                    put_events,
                    ..Batch::default()
                },
                true,
            )
            .unwrap();
        }
        let records = b.db.scan_prefix(b"e").count();
        assert!(records > 4 && records < 45, "{records} records");
        assert_eq!(all(&b, 0, u64::MAX), expected);
        for from in 0..=46 {
            for to in [from, from + 3, from + 17, 100] {
                let want: Vec<_> = expected
                    .iter()
                    .filter(|(r, _)| (from..=to).contains(r))
                    .cloned()
                    .collect();
                assert_eq!(all(&b, from, to), want, "{from}..={to}");
            }
            let want = expected
                .iter()
                .find(|(r, _)| *r == from)
                .map(|(_, e)| e.clone());
            assert_eq!(b.get_event(from).unwrap(), want, "event {from}");
        }
        // Drop every third event up to 30, and the whole run 31..=36.
        let doomed: Vec<Revision> = (1..=30).filter(|r| r % 3 == 0).chain(31..=36).collect();
        b.write(
            Batch {
                delete_events: doomed.clone(),
                ..Batch::default()
            },
            true,
        )
        .unwrap();
        expected.retain(|(r, _)| !doomed.contains(r));
        assert_eq!(all(&b, 0, u64::MAX), expected);
        for r in 0..=46 {
            let want = expected
                .iter()
                .find(|(x, _)| *x == r)
                .map(|(_, e)| e.clone());
            assert_eq!(b.get_event(r).unwrap(), want, "event {r} after compaction");
        }
        drop(b);
        // sled's own flusher thread lets go of the file lock as it exits, a moment after the
        // drop (`Store::open` retries the same way).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let b = loop {
            match SledBackend::open(&dir.path().join("sled"), 1 << 20) {
                Ok(b) => break b,
                Err(BackendError::Io(m))
                    if m.contains("lock") && std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now()
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        assert_eq!(all(&b, 0, u64::MAX), expected, "after reopen");
    }
}
