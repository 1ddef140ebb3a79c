//! TLS for the public listeners: loads a PEM certificate chain and key into a rustls server config
//! that offers HTTP/2 and HTTP/1.1 by ALPN. Owns nothing about sockets.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file problem, naming the config key (`cert` or `key`) it belongs to.
#[derive(Debug)]
pub struct TlsLoadError {
    pub key: &'static str,
    pub message: String,
}

pub fn load_server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsLoadError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|error| TlsLoadError {
            key: "cert",
            message: format!(
                "cannot read a PEM certificate chain from {}: {error}",
                cert.display()
            ),
        })?;
    if certs.is_empty() {
        return Err(TlsLoadError {
            key: "cert",
            message: format!(
                "expected at least one PEM certificate in {}",
                cert.display()
            ),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsLoadError {
        key: "key",
        message: format!(
            "cannot read a PEM private key from {}: {error}",
            key.display()
        ),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(certs, private_key)
        })
        .map_err(|error| TlsLoadError {
            key: "key",
            message: format!("certificate and key do not form a usable pair: {error}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
