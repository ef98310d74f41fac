//! Crash torture, once per durable backend: a child process (this test binary, re-executed
//! with `BONSAI_STORE_CRASH_CHILD` set) writes with several concurrent writers and prints every
//! acknowledgement; the parent SIGKILLs it at a random point (right at start-up, during
//! recovery, or after a random number of acks), reopens the store and checks:
//! - the store opens (a damaged store would be reported, never reset);
//! - every acknowledged create/update is in the log at its revision with its exact body, and
//!   every acknowledged delete has its DELETED event;
//! - every event in the log is one the child sent, whole (body equal to what was sent) — an
//!   unacknowledged write is all there or not at all;
//! - the current objects equal the state rebuilt from the log at the current revision.
//!
//! Seeded: set `BONSAI_CRASH_SEED` to replay a run; the seed is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apiserver::store::{BackendKind, EventType, Key, ListQuery, Precondition, Store, StoreConfig};
use serde_json::{json, Value};

const CHILD_ENV: &str = "BONSAI_STORE_CRASH_CHILD";
const KEYS: usize = 24;
const WRITERS: usize = 6;
/// SIGKILLs per backend (`BONSAI_CRASH_ROUNDS` overrides, e.g. for a long soak).
const ROUNDS: usize = 20;

fn key(i: usize) -> Key {
    Key::new("", "pods", "crash", &format!("k{i}"))
}

/// splitmix64: a tiny seeded generator (no unseeded randomness in tests).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The body of write `id`: deterministic, so the parent can check it byte for byte; the padding
/// (0–3000 bytes) makes some writes span pages.
fn body(id: &str) -> Value {
    let h = apiserver::api::fnv::fnv1a(id.as_bytes());
    json!({"data": {"id": id}, "pad": "p".repeat((h % 3000) as usize)})
}

fn config(kind: BackendKind, dir: &Path) -> StoreConfig {
    let path = match kind {
        BackendKind::Sled => dir.join("sled"),
        _ => dir.join("store.redb"),
    };
    StoreConfig::durable(kind, path)
}

/// The child: writes forever (until killed), printing `ACK` lines only after success.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let kind: BackendKind = parts.next().unwrap().parse().unwrap();
    let dir = parts.next().unwrap().to_string();
    let round: u64 = parts.next().unwrap().parse().unwrap();
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(config(kind, Path::new(&dir))).expect("child opens the store");
    println!("OPEN {}", store.revision());
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed ^ (round << 32) ^ w as u64);
                for n in 0u64.. {
                    // Each writer owns the keys k ≡ w (mod WRITERS): no conflicts between writers.
                    let k = key(w + WRITERS * rng.below((KEYS / WRITERS) as u64) as usize);
                    let id = format!("r{round}-w{w}-n{n}");
                    let current = store.get(&k);
                    let rv = current.as_ref().map(|o| {
                        o["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    });
                    match (current, rng.below(4)) {
                        (None, _) => {
                            println!("SEND {id}");
                            let o = store.create(&k, body(&id), "crash-child").await.unwrap();
                            println!(
                                "ACK put {} {} {id}",
                                k.name,
                                o["metadata"]["resourceVersion"].as_str().unwrap()
                            );
                        }
                        (Some(cur), 0) => {
                            let o = store
                                .delete(
                                    &k,
                                    Some(Precondition::ResourceVersion(rv.unwrap())),
                                    "crash-child",
                                )
                                .await
                                .unwrap();
                            assert_eq!(o["data"]["id"], cur["data"]["id"]);
                            println!(
                                "ACK del {} {} {}",
                                k.name,
                                rv.unwrap(),
                                cur["data"]["id"].as_str().unwrap()
                            );
                        }
                        (Some(_), _) => {
                            println!("SEND {id}");
                            let o = store
                                .update(
                                    &k,
                                    body(&id),
                                    Some(Precondition::ResourceVersion(rv.unwrap())),
                                    "crash-child",
                                )
                                .await
                                .unwrap();
                            println!(
                                "ACK put {} {} {id}",
                                k.name,
                                o["metadata"]["resourceVersion"].as_str().unwrap()
                            );
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Default)]
struct Seen {
    sent: BTreeSet<String>,
    /// (key name, revision) → id of acknowledged creates/updates.
    puts: BTreeMap<(String, u64), String>,
    /// (key name, revision of the deleted version, its id).
    dels: Vec<(String, u64, String)>,
    max_ack: u64,
}

fn torture(kind: BackendKind) {
    let seed = std::env::var("BONSAI_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!(
        "crash torture of {}: seed {seed} (BONSAI_CRASH_SEED={seed} replays it)",
        kind.as_str()
    );
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(seed);
    let mut seen = Seen::default();
    let rounds: u64 = std::env::var("BONSAI_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS as u64);
    for round in 0..rounds {
        // When to pull the plug: at start-up (during recovery), or after 1..250 acks.
        let target = if rng.below(5) == 0 {
            0
        } else {
            1 + rng.below(250)
        };
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!("{}|{}|{round}|{seed}", kind.as_str(), dir.path().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_reader =
            std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let mut acks = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let record = |line: &str, seen: &mut Seen| {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["SEND", id] => {
                    seen.sent.insert(id.to_string());
                }
                ["ACK", "put", name, rev, id] => {
                    let rev: u64 = rev.parse().unwrap();
                    seen.puts.insert((name.to_string(), rev), id.to_string());
                    seen.max_ack = seen.max_ack.max(rev);
                    return true;
                }
                ["ACK", "del", name, rev, id] => {
                    seen.dels
                        .push((name.to_string(), rev.parse().unwrap(), id.to_string()));
                    return true;
                }
                _ => {}
            }
            false
        };
        if target > 0 {
            while acks < target {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(line) => {
                        if record(&line, &mut seen) {
                            acks += 1;
                        }
                    }
                    Err(_) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "round {round}: child stopped after {acks} acks: {}",
                            err_reader.join().unwrap()
                        );
                    }
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Acks already in the pipe were given before the kill: they count too.
        for line in rx.try_iter() {
            record(&line, &mut seen);
        }
        let _ = err_reader.join();
        verify(kind, dir.path(), &seen, round);
    }
    println!(
        "crash torture of {}: {rounds} SIGKILLs, {} acknowledged writes checked, none lost",
        kind.as_str(),
        seen.puts.len() + seen.dels.len()
    );
}

fn verify(kind: BackendKind, dir: &Path, seen: &Seen, round: u64) {
    let store = Store::open(config(kind, dir))
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    let rev = store.revision();
    assert!(
        rev >= seen.max_ack,
        "round {round}: revision {rev} is behind an acknowledged write at {}",
        seen.max_ack
    );
    let mut history: BTreeMap<String, Vec<apiserver::store::Event>> = BTreeMap::new();
    for i in 0..KEYS {
        let h = store.history(&key(i)).unwrap();
        assert_eq!(h.truncated_before, None);
        history.insert(key(i).name, h.events);
    }
    // Every acknowledged write is there, exactly.
    for ((name, r), id) in &seen.puts {
        let e = history[name]
            .iter()
            .find(|e| e.revision == *r)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: acknowledged write {id} to {name} at revision {r} is missing"
                )
            });
        assert_ne!(e.event_type, EventType::Deleted);
        assert_eq!(
            e.object["data"]["id"],
            id.as_str(),
            "round {round}: revision {r}"
        );
    }
    for (name, r, id) in &seen.dels {
        let found = history[name].iter().any(|e| {
            e.event_type == EventType::Deleted
                && e.revision > *r
                && e.object["data"]["id"] == id.as_str()
        });
        assert!(
            found,
            "round {round}: acknowledged delete of {name} (version {r}, {id}) is missing"
        );
    }
    // Every event in the log is whole and one the child sent.
    let mut all = Vec::new();
    for events in history.values() {
        for e in events {
            let id = e.object["data"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("round {round}: event {} has no id", e.revision));
            assert!(
                seen.sent.contains(id),
                "round {round}: event {} carries {id}, which was never sent",
                e.revision
            );
            assert_eq!(
                e.object["pad"],
                body(id)["pad"],
                "round {round}: event {} body damaged",
                e.revision
            );
            all.push(e.revision);
        }
    }
    all.sort();
    assert_eq!(
        all,
        (1..=rev).collect::<Vec<_>>(),
        "round {round}: the log is gapless up to {rev}"
    );
    // The current objects are the log's state at the current revision.
    let listed = store
        .list(&ListQuery {
            resource: "pods".into(),
            ..ListQuery::default()
        })
        .unwrap();
    let state = store.state_at(rev).unwrap();
    assert_eq!(listed.items.len(), state.objects.len(), "round {round}");
    for o in listed.items {
        let k = Key::new("", "pods", "crash", o["metadata"]["name"].as_str().unwrap());
        assert_eq!(state.objects[&k], o, "round {round}: {k}");
        let last = history[&k.name].last().unwrap();
        assert_eq!(
            last.object, o,
            "round {round}: {k} differs from its last event"
        );
    }
}

#[test]
fn crash_torture_redb() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    torture(BackendKind::Redb);
}

#[test]
fn crash_torture_sled() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    torture(BackendKind::Sled);
}
