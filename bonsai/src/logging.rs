//! Per-component structured logs: `<data-dir>/logs/<component>.log`, one JSON object a line.
//!
//! All in-process components share one tracing subscriber; each log file gets the events whose
//! target starts with its component's crate name (`apiserver::http::rest` → apiserver.log).
//! Events of no component (bonsai's own wiring) go to `bonsai.log`. With `--foreground` the same
//! events are also printed, human-readable, on stderr. Level: `BONSAI_LOG` (or `RUST_LOG`),
//! default `info`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::error::CliError;

/// `(log file stem, tracing target prefix)` of every in-process component. Adding a component
/// to `bonsai up` means adding its line here (and starting it in `cluster`).
pub const COMPONENTS: &[(&str, &str)] = &[
    ("apiserver", "apiserver"),
    ("scheduler", "scheduler"),
    ("volume-controller", "volume_controller"),
    ("kubelet", "kubelet_lite"),
];

fn open(path: &Path) -> Result<File, CliError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(CliError::io("opening", path))
}

/// A log file created on its first line, so that `logs/` lists only components that ran.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        self.file.as_mut().expect("opened above").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

fn env_filter() -> EnvFilter {
    let spec = std::env::var("BONSAI_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the subscriber. `console`: also print to stderr (foreground mode).
pub fn init(logs: &Path, console: bool) -> Result<(), CliError> {
    std::fs::create_dir_all(logs).map_err(CliError::io("creating", logs))?;
    let mut layers: Vec<Box<dyn Layer<_> + Send + Sync>> = Vec::new();
    for (stem, prefix) in COMPONENTS {
        let file = LazyFile {
            path: logs.join(format!("{stem}.log")),
            file: None,
        };
        let prefix: &'static str = prefix;
        layers.push(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(Mutex::new(file))
                .with_filter(filter_fn(move |m| m.target().starts_with(prefix)))
                .boxed(),
        );
    }
    let file = open(&logs.join("bonsai.log"))?;
    layers.push(
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(Mutex::new(file))
            .with_filter(filter_fn(|m| {
                !COMPONENTS.iter().any(|(_, p)| m.target().starts_with(p))
            }))
            .boxed(),
    );
    if console {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(true)
                .boxed(),
        );
    }
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(env_filter())
        .with(layers)
        .try_init();
    Ok(())
}
