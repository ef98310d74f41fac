//! `CliError`: everything a bonsai command can fail with, worded for the person at the terminal
//! (what went wrong, which file or port, what to do next).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "bonsai is already running in {data_dir} (pid {pid}, API server http://127.0.0.1:{port}); \
         `bonsai down` stops it, or use another --data-dir"
    )]
    AlreadyRunning {
        pid: i32,
        port: u16,
        data_dir: PathBuf,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the cluster did not start: {message}\n(see {log})")]
    StartupFailed { message: String, log: PathBuf },

    #[error("could not stop bonsai (pid {pid}): {message}")]
    StopFailed { pid: i32, message: String },

    #[error("invalid {flag}: {message}")]
    InvalidFlag { flag: &'static str, message: String },

    #[error("cannot open the store in {path}: {message}")]
    Store { path: PathBuf, message: String },

    #[error(
        "cannot listen on 127.0.0.1:{port}: the port is already in use (is another bonsai or \
         API server running?); pick another with --port, or --port 0 for a free one"
    )]
    PortInUse { port: u16 },

    #[error("{0}")]
    Serve(String),

    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
}

impl CliError {
    /// `map_err(CliError::io("reading the state file", path))`
    pub fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
        let context = format!("{what} {}", path.display());
        move |source| CliError::Io { context, source }
    }
}
