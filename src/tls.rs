//! TLS for the `wss://` listener: rustls (with aws-lc-rs) with a certificate that
//! is reloaded from disk when its files change, without touching open
//! connections.
//!
//! A reload validates the new pair first, then swaps the `Arc` that new
//! handshakes read; a bad pair is logged and the old one stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, OutcomeLabel};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read private key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {cert} and key {key} do not form a usable pair: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Loads and checks a PEM certificate chain and private key (PKCS#8, RSA or EC).
pub(crate) fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Hands every new handshake the current certificate.
pub(crate) struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reloading")
    }
}

impl Reloading {
    fn get(&self) -> Arc<CertifiedKey> {
        // A writer only ever stores a whole Arc, so a poisoned lock still holds a valid one.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The TLS acceptor and the task that keeps its certificate fresh.
pub(crate) struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Reloading>,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
}

impl Tls {
    /// Loads the pair named in `settings`; fails (and the server stops) if it is unusable.
    pub(crate) fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        // aws-lc-rs: 10-15 % less CPU per Gbit than ring here (BENCHMARKS.md, "TLS").
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = load_pair(&settings.cert, &settings.key, &provider)?;
        let resolver = Arc::new(Reloading {
            current: RwLock::new(Arc::new(key)),
        });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair {
                cert: settings.cert.clone(),
                key: settings.key.clone(),
                reason: e.to_string(),
            })?;
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            settings: settings.clone(),
            provider,
        })
    }

    /// Checks the files every period and reloads a changed, valid pair, until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: CancellationToken, metrics: Arc<Metrics>) {
        let reloads = |outcome| {
            metrics
                .tls_reloads
                .get_or_create(&OutcomeLabel { outcome })
                .inc()
        };
        let Some(period) = self.settings.check_reload else {
            return;
        };
        let mut seen = self.stamps();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            let now = self.stamps();
            if now == seen {
                continue;
            }
            match load_pair(&self.settings.cert, &self.settings.key, &self.provider) {
                Ok(key) => {
                    self.resolver.set(key);
                    seen = now;
                    reloads("reloaded");
                    tracing::info!(cert = %self.settings.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    reloads("rejected");
                    tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
                }
            }
        }
    }

    /// Modification times of both files (symlinks followed, as certbot's live/ links need).
    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (stamp(&self.settings.cert), stamp(&self.settings.key))
    }
}
