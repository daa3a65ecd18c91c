//! Certificates (PEM files or a generated self-signed one) and the rustls
//! configurations for TLS over TCP and for QUIC.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig as RustlsConfig;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate could not be loaded, generated or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or malformed.
    #[error("cannot read PEM from {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no certificate (expected a `BEGIN CERTIFICATE` block)")]
    NoCertificate(PathBuf),
    /// The certificate directory or files cannot be written.
    #[error("cannot write the self-signed certificate into {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the certificate or key (e.g. key does not match).
    #[error("rustls rejected the certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// The configuration cannot be used for QUIC (needs TLS 1.3).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    // What the listeners built from this identity present; made on first use,
    // shared by the TCP and QUIC configurations (and by clones), replaced by
    // [`TlsReloader::reload`].
    slot: std::sync::OnceLock<Arc<CertSlot>>,
}

/// The certificate a TLS listener presents, swappable while it serves.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Replaces the certificate of running TLS and QUIC listeners (e.g. on
/// SIGHUP): handshakes after [`TlsReloader::reload`] see the new one,
/// connections already open keep theirs and are not disturbed.
#[derive(Debug, Clone)]
pub struct TlsReloader(Arc<CertSlot>);

impl TlsReloader {
    /// Presents `identity` from the next handshake on.
    pub fn reload(&self, identity: &TlsIdentity) -> Result<(), TlsError> {
        let key = identity.certified_key()?;
        *self.0.0.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
            slot: self.slot.clone(),
        }
    }
}

/// Where a self-signed certificate was stored.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// `DIR/cert.pem`: give it to clients as their trust root.
    pub cert_path: PathBuf,
    /// `DIR/key.pem`.
    pub key_path: PathBuf,
    /// The loaded identity.
    pub identity: TlsIdentity,
}

impl TlsIdentity {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let pem_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Pem { path, source }
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(pem_err(cert))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err(cert))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(cert.to_path_buf()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
        Ok(Self {
            certs,
            key,
            slot: std::sync::OnceLock::new(),
        })
    }

    /// The certificate chain, leaf first (clients can trust the leaf of a self-signed one).
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Loads `DIR/cert.pem` + `DIR/key.pem`, generating a self-signed pair for
    /// `localhost`, `127.0.0.1` and `::1` first if either is missing.
    pub fn self_signed_in(dir: impl AsRef<Path>) -> Result<SelfSigned, TlsError> {
        let dir = dir.as_ref();
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        if !cert_path.exists() || !key_path.exists() {
            let names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            let generated = rcgen::generate_simple_self_signed(names)?;
            // Owner-only: the directory may be shared, and this file holds the private key.
            let write = |path: &Path, text: String| {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                options
                    .open(path)
                    .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
                    .map_err(|source| TlsError::Write {
                        path: path.to_path_buf(),
                        source,
                    })
            };
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
            write(&key_path, generated.signing_key.serialize_pem())?;
            write(&cert_path, generated.cert.pem())?;
            tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
        }
        let identity = Self::from_pem_files(&cert_path, &key_path)?;
        Ok(SelfSigned {
            cert_path,
            key_path,
            identity,
        })
    }

    fn rustls_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Result<RustlsConfig, TlsError> {
        let mut cfg = RustlsConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(self.slot()?);
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        // Checks that the key belongs to the certificate, as `with_single_cert` did.
        let key = CertifiedKey::from_der(
            self.certs.clone(),
            self.key.clone_key(),
            &ring::default_provider(),
        )?;
        Ok(Arc::new(key))
    }

    fn slot(&self) -> Result<Arc<CertSlot>, TlsError> {
        if let Some(slot) = self.slot.get() {
            return Ok(slot.clone());
        }
        let slot = Arc::new(CertSlot(RwLock::new(self.certified_key()?)));
        Ok(self.slot.get_or_init(|| slot).clone())
    }

    /// The handle that replaces the certificate of the listeners built from
    /// this identity (and its clones).
    pub fn reloader(&self) -> Result<TlsReloader, TlsError> {
        self.slot().map(TlsReloader)
    }

    /// rustls configuration for TLS over TCP: ALPN `h2` then `http/1.1`.
    pub(crate) fn tcp_config(&self) -> Result<Arc<RustlsConfig>, TlsError> {
        let cfg = self.rustls_config(rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"])?;
        Ok(Arc::new(cfg))
    }

    /// rustls configuration for QUIC: TLS 1.3 only, ALPN `h3`.
    pub(crate) fn quic_config(&self) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
        let mut cfg = self.rustls_config(&[&rustls::version::TLS13], &[b"h3"])?;
        // quinn accepts only 0 or u32::MAX here; 0-RTT stays off (replay risk for uploads).
        cfg.max_early_data_size = 0;
        quinn::crypto::rustls::QuicServerConfig::try_from(cfg)
            .map_err(|e| TlsError::Quic(e.to_string()))
    }
}

/// Handles SIGHUP for the life of the process: each one re-reads the PEM
/// files of `tls` (reloader, certificate, key) and presents them from the next
/// handshake on; connections stay up. A bad file keeps the current
/// certificate (logged). Without `tls`, SIGHUP is logged and ignored instead
/// of ending the process (its default action). Unix only; a no-op elsewhere.
pub fn reload_tls_on_sighup(tls: Option<(TlsReloader, PathBuf, PathBuf)>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some((reloader, cert, key)) = &tls else {
                    tracing::info!("SIGHUP: no TLS listener, nothing to reload");
                    continue;
                };
                match TlsIdentity::from_pem_files(cert, key).and_then(|id| reloader.reload(&id)) {
                    Ok(()) => {
                        tracing::info!(cert = %cert.display(), "SIGHUP: TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: kept the current TLS certificate")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
}
