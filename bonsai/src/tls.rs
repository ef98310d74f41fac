//! The HTTPS endpoint that kubectl talks to.
//!
//! Why TLS on loopback: client-go reads a kubeconfig's credentials only when the server URL is
//! `https` ("only try to read the auth information if we are secure", clientcmd
//! `client_config.go`), so against an `http://` server kubectl sends no token at all and every
//! request is 401. Like kind, k3s or minikube, bonsai therefore serves HTTPS with its own CA,
//! created at first start in `<data-dir>/pki/` and written into the kubeconfig as
//! `certificate-authority-data`, next to the bearer token.
//!
//! The API server itself listens on a private loopback port (plain HTTP, still token-protected);
//! this module terminates TLS on the public port and splices each connection's bytes to it,
//! unchanged (HTTP/1.1 only, so upgrades for exec and long watches pass through as they are).
//! In-process controllers use the private port directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::datadir::{write_private, DataDir};
use crate::error::CliError;

/// The CA (PEM, for the kubeconfig) and the acceptor built from the server certificate.
pub struct Tls {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

fn pki_error(dir: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::Serve(format!("TLS material in {}: {message}", dir.display()))
}

/// Loads `<data-dir>/pki/{ca.crt,server.crt,server.key}`, creating them at first start
/// (ECDSA P-256; the server certificate names 127.0.0.1 and localhost).
pub fn load_or_create(dir: &DataDir) -> Result<Tls, CliError> {
    let pki = dir.root.join("pki");
    let (ca, crt, key) = (
        pki.join("ca.crt"),
        pki.join("server.crt"),
        pki.join("server.key"),
    );
    if !(ca.exists() && crt.exists() && key.exists()) {
        std::fs::create_dir_all(&pki).map_err(CliError::io("creating", &pki))?;
        let (ca_pem, crt_pem, key_pem) = generate().map_err(|e| pki_error(&pki, e))?;
        write_private(&ca, ca_pem.as_bytes())?;
        write_private(&crt, crt_pem.as_bytes())?;
        write_private(&key, key_pem.as_bytes())?;
    }
    let ca_pem = std::fs::read_to_string(&ca).map_err(CliError::io("reading", &ca))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
        .map_err(|e| pki_error(&pki, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pki_error(&pki, e))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| pki_error(&pki, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| pki_error(&pki, e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| pki_error(&pki, e))?;
    // The bytes are spliced to an HTTP/1.1 server.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

fn generate() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bonsai-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "bonsai-apiserver");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Accepts TLS connections on `listener` and splices each to `backend` until `shutdown`.
pub fn spawn_front(
    listener: TcpListener,
    backend: SocketAddr,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let (client, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(client)).await;
                let mut tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let mut upstream = match TcpStream::connect(backend).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%backend, error = %e, "cannot reach the API server");
                        return;
                    }
                };
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_created_once_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        dir.create().unwrap();
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
