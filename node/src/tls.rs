//! Optional TLS for the HTTP API (`specs/api.md` "Transport security").
//!
//! Server side: [`server_config`] reads a PEM certificate chain and private key into a rustls
//! configuration (TLS 1.2 and 1.3, rustls' default cipher suites, no client certificates), and
//! [`TlsListener`] puts it under `axum::serve`, so the router, its middleware (body limit,
//! timeout, rate limits, error shape) and the graceful shutdown are the same as over plain HTTP.
//! Client side (this node calling another node's API): [`set_peer_ca`] installs an extra trusted
//! root for `https://` URLs, and [`peer_agent_builder`] hands out ureq agents that use it.
//!
//! rustls runs with the `ring` provider, the one ureq is built with; the provider is passed
//! explicitly, so no process-wide default has to be installed.

use anyhow::{anyhow, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's accept queue.
pub const MAX_HANDSHAKES: usize = 256;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{what} {}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{what} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path, what: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow!(
            "{what} {}: no usable PEM private key in it ({e})",
            path.display()
        )
    })
}

/// The server configuration for the API: the certificate chain in `cert` (leaf first), the
/// private key in `key` (which must match the leaf), TLS 1.2+, HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(cert, "tls_cert")?;
    let key_der = read_key(key, "tls_key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            anyhow!(
                "tls_cert {} / tls_key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Both or neither: `(Some, Some)` is a server config, `(None, None)` plain HTTP, anything
/// else an error naming the missing one.
pub fn server_config_opt(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    match (cert, key) {
        (Some(c), Some(k)) => server_config(c, k).map(Some),
        (None, None) => Ok(None),
        (Some(_), None) => anyhow::bail!(
            "TLS: tls_cert is set but tls_key is not; set both (PEM files) or neither"
        ),
        (None, Some(_)) => anyhow::bail!(
            "TLS: tls_key is set but tls_cert is not; set both (PEM files) or neither"
        ),
    }
}

/// A rustls client configuration trusting the Mozilla roots ureq trusts by default plus every
/// certificate in the PEM file `ca`, if given.
pub fn client_config(ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        for c in read_certs(ca, "tls_ca")? {
            roots
                .add(c)
                .map_err(|e| anyhow!("tls_ca {}: {e}", ca.display()))?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

static PEER_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts the certificates in `ca` (besides the default roots) for the `https://` URLs of
/// other nodes this process calls. Call once at startup; a later call is an error.
pub fn set_peer_ca(ca: &Path) -> anyhow::Result<()> {
    let cfg = client_config(Some(ca))?;
    PEER_TLS
        .set(cfg)
        .map_err(|_| anyhow!("tls_ca: the peer CA is already set"))
}

/// A ureq agent builder for calls to other nodes' APIs: `https://` URLs are checked against
/// the default roots and the CA of [`set_peer_ca`], if one was set.
pub fn peer_agent_builder() -> ureq::AgentBuilder {
    let b = ureq::AgentBuilder::new();
    match PEER_TLS.get() {
        Some(cfg) => b.tls_config(cfg.clone()),
        None => b,
    }
}

/// A listener for `axum::serve` that hands out TLS connections: a task accepts TCP connections
/// and runs each handshake in its own task (at most [`MAX_HANDSHAKES`] at once, each within
/// [`HANDSHAKE_TIMEOUT`]), so a slow or silent client holds up no one else. Connections whose
/// handshake fails (plain HTTP, an untrusted or wrong certificate at the client, a timeout) are
/// closed without reaching the router. Dropping the listener stops accepting.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Wraps a bound TCP listener; must run inside a tokio runtime.
    pub fn new(listener: TcpListener, cfg: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {addr} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {addr} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (runtime shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_or_neither() {
        assert!(server_config_opt(None, None).unwrap().is_none());
        let e = server_config_opt(Some(Path::new("c.pem")), None).unwrap_err();
        assert!(e.to_string().contains("tls_key is not"), "{e}");
        let e = server_config_opt(None, Some(Path::new("k.pem"))).unwrap_err();
        assert!(e.to_string().contains("tls_cert is not"), "{e}");
    }

    #[test]
    fn unreadable_and_invalid_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &missing).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = server_config(&junk, &junk).unwrap_err();
        assert!(format!("{e:#}").contains("no PEM certificate"), "{e:#}");
        let e = client_config(Some(&junk)).unwrap_err();
        assert!(format!("{e:#}").contains("tls_ca"), "{e:#}");
        assert!(client_config(None).is_ok());
    }

    /// The listener under `axum::serve`: a client trusting the certificate gets the answer
    /// (and the handler its address), one trusting only the public roots is refused, and a
    /// connection that never starts its handshake holds up no one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listener_serves_tls_and_peer_config_trusts_the_ca() {
        use axum::extract::ConnectInfo;
        use axum::serve::ListenerExt as _;
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();

        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener::new(tcp, server_config(&cert, &key).unwrap())
            .unwrap()
            .tap_io(|_| {});
        let app = axum::Router::new().route(
            "/hi",
            axum::routing::get(|ConnectInfo(a): ConnectInfo<SocketAddr>| async move {
                format!("hi {}", a.ip())
            }),
        );
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let url = format!("https://127.0.0.1:{port}/hi");
        let (answer, refused) = tokio::task::spawn_blocking(move || {
            let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let trusted = ureq::AgentBuilder::new()
                .tls_config(client_config(Some(&cert)).unwrap())
                .build();
            let answer = trusted.get(&url).call().unwrap().into_string().unwrap();
            let public_only = ureq::AgentBuilder::new()
                .tls_config(client_config(None).unwrap())
                .build();
            (answer, public_only.get(&url).call().is_err())
        })
        .await
        .unwrap();
        assert_eq!(answer, "hi 127.0.0.1");
        assert!(refused);
        server.abort();
    }
}
