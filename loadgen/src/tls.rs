//! Building a [`TlsTarget`] from PEM files: server roots, and an optional
//! client certificate for mTLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::Protocol;
use crate::client::TlsTarget;

/// Where the system's CA bundle usually lives (what `rustls-native-certs`
/// reads on Unix), tried in order when no `--cacert` is given.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why TLS settings could not be built. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The pieces do not fit together (key does not match the certificate,
    /// bad server name, only one of cert/key given…).
    #[error("{0}")]
    Config(String),
}

/// PEM files for an HTTPS target.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// Roots to verify the server with; `None` = the system bundle
    /// (`SSL_CERT_FILE`, else the usual Unix locations).
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM), for mTLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

fn file_error(path: &Path, message: impl ToString) -> TlsSetupError {
    TlsSetupError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

fn system_bundle() -> Result<PathBuf, TlsSetupError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            TlsSetupError::Config(
                "no --cacert given and no system CA bundle found (set SSL_CERT_FILE)".into(),
            )
        })
}

impl TlsFiles {
    /// Reads the files and builds client settings that verify `server_host`
    /// (a DNS name or IP address) and offer ALPN for `protocol`.
    pub fn target(
        &self,
        server_host: &str,
        protocol: Protocol,
    ) -> Result<TlsTarget, TlsSetupError> {
        let cacert = match &self.cacert {
            Some(path) => path.clone(),
            None => system_bundle()?,
        };
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certificates(&cacert)?);
        if added == 0 {
            return Err(file_error(&cacert, "no usable CA certificate"));
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Config(e.to_string()))?
            .with_root_certificates(roots);
        self.finish(builder, server_host, protocol)
    }

    /// Like [`TlsFiles::target`], but the server's certificate is not
    /// verified at all (curl's `--insecure`): for test servers with
    /// self-signed certificates. The client certificate is still offered.
    pub fn insecure_target(
        &self,
        server_host: &str,
        protocol: Protocol,
    ) -> Result<TlsTarget, TlsSetupError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
        self.finish(builder, server_host, protocol)
    }

    fn finish(
        &self,
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
        server_host: &str,
        protocol: Protocol,
    ) -> Result<TlsTarget, TlsSetupError> {
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| file_error(key, format!("does not fit {}: {e}", cert.display())))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsSetupError::Config(
                    "a client certificate needs both --cert and --key".into(),
                ));
            }
        };
        config.alpn_protocols = match protocol {
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
            Protocol::Http2 => vec![b"h2".to_vec()],
        };
        let server_name = ServerName::try_from(server_host.to_owned()).map_err(|e| {
            TlsSetupError::Config(format!("`{server_host}` is not a TLS server name: {e}"))
        })?;
        Ok(TlsTarget {
            config: Arc::new(config),
            server_name,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (`--insecure`); handshake signatures are
/// still checked, so the connection is encrypted to whoever answered.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
