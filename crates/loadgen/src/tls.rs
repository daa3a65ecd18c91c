//! Self-signed certificates and rustls configurations (ring provider only).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// ALPN identifier of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// ALPN identifier of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN identifier of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// Names the generated certificate is valid for: every way to say "this machine".
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Paths of a certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate; clients trust it as their CA.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// A freshly generated self-signed certificate, in memory.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
}

/// The crypto provider every configuration of this crate uses.
///
/// Passed explicitly rather than installed process-wide, so a binary that links
/// another provider elsewhere still measures ring here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Generates a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn self_signed() -> Result<SelfSigned> {
    let names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok(SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

/// Makes sure `dir` holds `cert.pem` and `key.pem`, generating them if either is missing.
pub fn ensure_self_signed(dir: &Path) -> Result<CertFiles> {
    let files = CertFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if files.cert.is_file() && files.key.is_file() {
        return Ok(files);
    }
    fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let generated = self_signed()?;
    fs::write(&files.key, &generated.key_pem)
        .map_err(Error::io(format!("write {}", files.key.display())))?;
    fs::write(&files.cert, &generated.cert_pem)
        .map_err(Error::io(format!("write {}", files.cert.display())))?;
    Ok(files)
}

/// Server configuration from PEM files, offering the given ALPN protocols.
pub fn server_config(files: &CertFiles, alpn: &[&[u8]]) -> Result<ServerConfig> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    server_config_from_pem(&cert_pem, &key_pem, alpn, &files.cert.display().to_string())
}

/// Server configuration from in-memory PEM, offering the given ALPN protocols.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
    origin: &str,
) -> Result<ServerConfig> {
    let certs = parse_certs(cert_pem, origin)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Pem {
        path: origin.to_string(),
        reason: format!("private key: {e}"),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Client configuration trusting only the certificates in the PEM file `ca`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Result<ClientConfig> {
    client_config_from_pem(&read(ca)?, alpn, &ca.display().to_string())
}

/// Client configuration trusting only the certificates in `ca_pem`.
pub fn client_config_from_pem(ca_pem: &[u8], alpn: &[&[u8]], origin: &str) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem, origin)? {
        roots.add(cert)?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(Error::io(format!("read {}", path.display())))
}

fn parse_certs(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: origin.to_string(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}
