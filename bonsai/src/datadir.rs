//! The data directory: one place for the store, the credentials and the logs of one cluster,
//! so that two clusters in two directories never meet (tests rely on it).
//!
//! ```text
//! <data-dir>/kubeconfig     mode 0600, server https://127.0.0.1:<port>, bonsai's CA, token
//! <data-dir>/token          mode 0600, created at first start, kept across restarts
//! <data-dir>/pki/           ca.crt, server.crt, server.key (see `tls`)
//! <data-dir>/store/         the store (sled directory, or redb file store/bonsai.redb)
//! <data-dir>/logs/          <component>.log (JSON lines), bonsai.out (stdout/stderr of `up`)
//! <data-dir>/bonsai.lock    flock held by the running cluster process
//! <data-dir>/bonsai.state   JSON: pid, port, start time, components (written when ready)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver::store::{BackendKind, Durability, StoreConfig, WatchWindow};

use crate::error::CliError;

#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// Makes the path absolute (kubeconfig paths printed to the user must work from anywhere).
    pub fn new(path: &Path) -> Result<DataDir, CliError> {
        let root = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(CliError::io(
                    "reading the current directory",
                    Path::new("."),
                ))?
                .join(path)
        };
        Ok(DataDir {
            root: normalize(&root),
        })
    }

    pub fn create(&self) -> Result<(), CliError> {
        for dir in [self.root.clone(), self.logs()] {
            fs::create_dir_all(&dir).map_err(CliError::io("creating", &dir))?;
        }
        Ok(())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("bonsai.lock")
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("bonsai.state")
    }
    /// stdout/stderr of the detached cluster process (panics, early errors).
    pub fn out_log(&self) -> PathBuf {
        self.logs().join("bonsai.out")
    }

    /// The bearer token: created (random, UUID v4) at first start, then reused, so a
    /// kubeconfig merged into ~/.kube/config keeps working across restarts.
    pub fn token(&self) -> Result<String, CliError> {
        let path = self.token_file();
        match fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::io("reading", &path)(e)),
        }
        let token = format!("bonsai-{}", uuid::Uuid::new_v4().simple());
        write_private(&path, token.as_bytes())?;
        Ok(token)
    }
}

/// Writes a file readable only by its owner (tokens, kubeconfigs), atomically (temp + rename),
/// so a reader never sees half a file.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CliError::io("creating", &tmp))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(CliError::io("chmod", &tmp))?;
    f.write_all(contents)
        .map_err(CliError::io("writing", &tmp))?;
    f.sync_all().map_err(CliError::io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(CliError::io("renaming into place", path))?;
    Ok(())
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Store flags shared by `up` and `apiserver`.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Store backend: auto (the existing store's, else redb), redb, sled, or memory (nothing
    /// on disk).
    #[arg(long = "store-backend", default_value = "auto")]
    pub backend: String,
    /// durable: a write is acknowledged after it is on disk (fdatasync, group commit);
    /// relaxed: after the backend committed it, without a flush (faster, may lose the last
    /// writes on a power cut).
    #[arg(long, default_value = "durable")]
    pub durability: String,
    /// How far back a watch may resume before getting 410 Gone (e.g. 300s, 5m, 1h).
    #[arg(long, default_value = "5m")]
    pub watch_window: String,
    /// At most this many events in the watch window.
    #[arg(long, default_value_t = 100_000)]
    pub watch_window_events: usize,
    /// The log keeps at least this many events for `bonsai history`.
    #[arg(long, default_value_t = 100_000)]
    pub retention: u64,
}

impl StoreArgs {
    /// The backend `--store-backend` names for `dir`: `auto` is the backend of the store the
    /// data directory already has, else the default; a durable backend other than the
    /// existing store's is refused (it would start an empty cluster beside the old one).
    pub fn backend(&self, dir: &DataDir) -> Result<BackendKind, CliError> {
        let existing = BackendKind::existing(&dir.store());
        if self.backend == "auto" {
            return Ok(existing.unwrap_or(BackendKind::DEFAULT));
        }
        let asked: BackendKind = self.backend.parse().map_err(|_| CliError::InvalidFlag {
            flag: "--store-backend",
            message: format!(
                "unknown store backend {:?} (expected auto, memory, sled or redb)",
                self.backend
            ),
        })?;
        match existing {
            Some(found) if asked != BackendKind::Memory && found != asked => {
                Err(CliError::InvalidFlag {
                    flag: "--store-backend",
                    message: format!(
                        "{} holds a {} store, not {}: pass --store-backend {} (or auto), or \
                         use another --data-dir",
                        dir.store().display(),
                        found.as_str(),
                        asked.as_str(),
                        found.as_str()
                    ),
                })
            }
            _ => Ok(asked),
        }
    }

    pub fn to_config(&self, dir: &DataDir) -> Result<StoreConfig, CliError> {
        let backend = self.backend(dir)?;
        let durability = match self.durability.as_str() {
            "durable" => Durability::Durable,
            "relaxed" => Durability::Relaxed,
            other => {
                return Err(CliError::InvalidFlag {
                    flag: "--durability",
                    message: format!("{other:?} (expected durable or relaxed)"),
                })
            }
        };
        let max_age =
            parse_duration(&self.watch_window).map_err(|message| CliError::InvalidFlag {
                flag: "--watch-window",
                message,
            })?;
        let mut cfg = match backend {
            BackendKind::Memory => StoreConfig::memory(),
            durable => StoreConfig::durable(durable, durable.path_in(&dir.store())),
        };
        cfg.durability = durability;
        cfg.watch_window = WatchWindow {
            max_age,
            max_events: self.watch_window_events,
        };
        cfg.retention_events = self.retention;
        Ok(cfg)
    }

    /// One line for the startup summary.
    pub fn describe(&self, dir: &DataDir) -> String {
        match self.backend(dir) {
            Ok(BackendKind::Memory) => "store: memory (nothing on disk)".to_string(),
            Ok(b) => format!(
                "store: {}, {}, {}",
                b.as_str(),
                self.durability,
                dir.store().display()
            ),
            Err(_) => format!("store: {} (invalid)", self.backend),
        }
    }
}

/// `300s`, `5m`, `1h`, `250ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300s, 5m, 1h)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_args(backend: &str) -> StoreArgs {
        StoreArgs {
            backend: backend.into(),
            durability: "durable".into(),
            watch_window: "5m".into(),
            watch_window_events: 100_000,
            retention: 100_000,
        }
    }

    #[test]
    fn a_data_dir_keeps_its_store_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        // A new data directory: auto is the default backend.
        assert_eq!(
            store_args("auto").backend(&dir).unwrap(),
            BackendKind::DEFAULT
        );
        assert_eq!(store_args("sled").backend(&dir).unwrap(), BackendKind::Sled);
        // A real sled store made by an earlier version: auto keeps it, redb is refused.
        let cfg = store_args("sled").to_config(&dir).unwrap();
        std::fs::create_dir_all(dir.store()).unwrap();
        apiserver::store::Store::open(cfg).unwrap();
        assert_eq!(store_args("auto").backend(&dir).unwrap(), BackendKind::Sled);
        let err = store_args("redb").backend(&dir).unwrap_err().to_string();
        assert!(
            err.contains("holds a sled store, not redb") && err.contains("--store-backend sled"),
            "{err}"
        );
        assert!(store_args("auto")
            .describe(&dir)
            .starts_with("store: sled, durable"));
        // memory never touches the disk, so it may run over any data directory.
        assert_eq!(
            store_args("memory").backend(&dir).unwrap(),
            BackendKind::Memory
        );
        // A redb store.
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        std::fs::create_dir_all(dir.store()).unwrap();
        apiserver::store::Store::open(store_args("redb").to_config(&dir).unwrap()).unwrap();
        assert_eq!(store_args("auto").backend(&dir).unwrap(), BackendKind::Redb);
        assert!(store_args("sled").backend(&dir).is_err());
        let err = store_args("rocks").backend(&dir).unwrap_err().to_string();
        assert!(err.contains("expected auto, memory, sled or redb"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn token_is_created_once_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        dir.create().unwrap();
        let a = dir.token().unwrap();
        let b = dir.token().unwrap();
        assert_eq!(a, b);
        let mode = fs::metadata(dir.token_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn relative_data_dir_becomes_absolute() {
        let d = DataDir::new(Path::new("./x/../.bonsai")).unwrap();
        assert!(d.root.is_absolute());
        assert!(d.root.ends_with(".bonsai"));
        assert!(!d.root.to_string_lossy().contains(".."));
    }
}
