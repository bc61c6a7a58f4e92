//! The one error type of the mesh. Like pingora's, it says whether the
//! request can have reached the upstream, so retries read the error instead
//! of guessing; TLS failures are typed ([`TlsFailure`]) so nobody searches
//! their messages.

use std::io;

/// Errors at the mesh crate boundary.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Socket-level failure while connecting.
    #[error("connect to {target} failed: {source}")]
    Connect { target: String, source: io::Error },
    /// Other I/O failure.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// TLS handshake, record or setup failure, classified.
    #[error("tls: {0}")]
    Tls(#[from] TlsFailure),
    /// HTTP protocol failure.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// An HTTP/1.1 exchange on a pooled connection failed
    /// (`client::pool`, on `h1wire`).
    #[error("http/1.1: {0}")]
    Http1(#[from] h1wire::ReadError),
    /// HTTP/2 failure on a client stream (`proxy::h2pool`); `unsent` when
    /// h2 refused the request before writing any of it.
    #[error("http2: {error}")]
    Http2 { error: h2::Error, unsent: bool },
    /// Building, parsing or signing a certificate failed.
    #[error("certificate: {0}")]
    Cert(String),
    /// A SPIFFE ID that is malformed or not the expected one.
    #[error("bad identity: {0}")]
    BadIdentity(String),
    /// The CA refused to sign.
    #[error("certificate request refused: {0}")]
    Refused(String),
    /// Discovery knows no endpoint for the service.
    #[error("no endpoints for service {0}")]
    NoEndpoints(String),
    /// The proxy has no valid certificate (never issued, or expired).
    #[error("no valid workload certificate")]
    NoIdentity,
    /// The upstream answered with an unexpected status.
    #[error("upstream answered {0}")]
    Status(u16),
    /// A deadline passed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// A body or header over its limit, or unreadable input.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl MeshError {
    /// Wraps an h2 failure; `unsent`: h2 wrote none of the request.
    pub fn http2(unsent: bool) -> impl Fn(h2::Error) -> MeshError {
        move |error| MeshError::Http2 { error, unsent }
    }

    /// Wraps any displayable certificate-library error.
    pub fn cert(error: impl std::fmt::Display) -> Self {
        MeshError::Cert(error.to_string())
    }

    /// Whether the request certainly never reached the upstream application,
    /// so even a non-idempotent request may be retried: no connection, no
    /// TLS session, nowhere to send it, or hyper gave the request back
    /// unsent (`is_canceled`: the connection closed before it was written),
    /// or h2 did, or the peer refused the stream unprocessed.
    /// The outbound proxy's retries read this (`proxy::retry`).
    pub fn never_sent(&self) -> bool {
        match self {
            MeshError::Connect { .. }
            | MeshError::Tls(_)
            | MeshError::NoEndpoints(_)
            | MeshError::NoIdentity => true,
            MeshError::Http(error) => error.is_canceled(),
            // RFC 9113 §8.7: a server sends REFUSED_STREAM only for a
            // request it did not process.
            MeshError::Http2 { error, unsent } => {
                *unsent || error.reason() == Some(h2::Reason::REFUSED_STREAM)
            }
            _ => false,
        }
    }
}

/// Why TLS failed, classified from rustls's error value (not its message),
/// with rustls's message kept as the `Display`, byte for byte: traces print
/// it (`err=tls: …`) and trace hashes cover those bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// A certificate past its notAfter: the peer's by our clock, or ours by
    /// the peer's (it sent a `certificate_expired` alert, which rustls also
    /// sends for a not-yet-valid certificate).
    #[error("{detail}")]
    Expired { detail: String },
    /// The peer's certificate is before its notBefore by our clock.
    /// `dated`: rustls gave the times (webpki always does).
    #[error("{detail}")]
    NotValidYet { detail: String, dated: bool },
    /// The peer's certificate is revoked (our list), or the peer says ours is.
    #[error("{detail}")]
    Revoked { detail: String },
    /// The peer's chain does not lead to our trust bundle, or (`alert`) the
    /// peer says ours does not lead to its bundle.
    #[error("{detail}")]
    UnknownIssuer { detail: String, alert: bool },
    /// No client certificate where one is required: `alert` when the server
    /// told us so, otherwise we are the server and the client sent none.
    #[error("{detail}")]
    NoCertificate { detail: String, alert: bool },
    /// A valid certificate for someone else: its DNS-form name or SPIFFE
    /// URI SAN is not the identity expected, or it carries no usable one.
    #[error("{detail}")]
    WrongIdentity { detail: String },
    /// Building the TLS configuration failed (key, root or protocol set).
    #[error("{detail}")]
    Setup { detail: String },
    /// Anything else: a protocol error, a connection that broke mid-handshake.
    #[error("{detail}")]
    Other { detail: String },
}

impl TlsFailure {
    /// A handshake failure as tokio-rustls reports it (an `io::Error`,
    /// wrapping the `rustls::Error` when rustls refused).
    pub fn handshake(error: &io::Error) -> Self {
        let detail = error.to_string();
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls) => TlsFailure::classify(rustls, detail),
            None => TlsFailure::Other { detail },
        }
    }

    /// A failure to build a TLS configuration.
    pub fn setup(error: impl std::fmt::Display) -> Self {
        TlsFailure::Setup {
            detail: error.to_string(),
        }
    }

    fn classify(error: &rustls::Error, detail: String) -> Self {
        use rustls::{AlertDescription as Alert, CertRevocationListError, CertificateError as C};
        match error {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::Expired
                | C::ExpiredContext { .. }
                | C::ExpiredRevocationList
                | C::ExpiredRevocationListContext { .. } => TlsFailure::Expired { detail },
                C::NotValidYet => TlsFailure::NotValidYet {
                    detail,
                    dated: false,
                },
                C::NotValidYetContext { .. } => TlsFailure::NotValidYet {
                    detail,
                    dated: true,
                },
                C::Revoked => TlsFailure::Revoked { detail },
                C::UnknownIssuer => TlsFailure::UnknownIssuer {
                    detail,
                    alert: false,
                },
                C::NotValidForName
                | C::NotValidForNameContext { .. }
                | C::ApplicationVerificationFailure => TlsFailure::WrongIdentity { detail },
                _ => TlsFailure::Other { detail },
            },
            rustls::Error::InvalidCertRevocationList(
                CertRevocationListError::InvalidRevokedCertSerialNumber,
            ) => TlsFailure::Revoked { detail },
            rustls::Error::AlertReceived(alert) => match alert {
                Alert::CertificateExpired => TlsFailure::Expired { detail },
                Alert::CertificateRevoked => TlsFailure::Revoked { detail },
                Alert::UnknownCA => TlsFailure::UnknownIssuer {
                    detail,
                    alert: true,
                },
                Alert::CertificateRequired => TlsFailure::NoCertificate {
                    detail,
                    alert: true,
                },
                _ => TlsFailure::Other { detail },
            },
            rustls::Error::NoCertificatesPresented => TlsFailure::NoCertificate {
                detail,
                alert: false,
            },
            _ => TlsFailure::Other { detail },
        }
    }

    /// The class the inbound proxy records as `cert.peer_rejected
    /// reason=…`, which the identity checks count.
    ///
    /// The mapping reproduces what the trace has always said, when the
    /// class was found by searching the message for words: rustls's dated
    /// not-yet-valid message ("certificate not valid yet: …"), "peer sent
    /// no certificates" and the `UnknownCA` alert never contained the
    /// words searched for, so they were, and still are, `other`.
    pub fn trace_reason(&self) -> &'static str {
        match self {
            TlsFailure::Expired { .. } => "expired",
            TlsFailure::NotValidYet { dated: false, .. } => "not_yet_valid",
            TlsFailure::Revoked { .. } => "revoked",
            TlsFailure::UnknownIssuer { alert: false, .. } => "unknown_issuer",
            TlsFailure::NoCertificate { alert: true, .. } => "no_certificate",
            TlsFailure::NotValidYet { dated: true, .. }
            | TlsFailure::UnknownIssuer { alert: true, .. }
            | TlsFailure::NoCertificate { alert: false, .. }
            | TlsFailure::WrongIdentity { .. }
            | TlsFailure::Setup { .. }
            | TlsFailure::Other { .. } => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::{AlertDescription as Alert, CertificateError as C};
    use rustls_pki_types::UnixTime;

    use super::*;

    #[test]
    fn only_unwritten_or_refused_http2_streams_count_as_never_sent() {
        let refused = MeshError::http2(false)(h2::Reason::REFUSED_STREAM.into());
        let cancelled_unsent = MeshError::http2(true)(h2::Reason::CANCEL.into());
        let cancelled = MeshError::http2(false)(h2::Reason::CANCEL.into());
        assert!(refused.never_sent());
        assert!(cancelled_unsent.never_sent());
        assert!(!cancelled.never_sent());
    }

    /// How the inbound proxy classed a refusal before [`TlsFailure`]: by
    /// searching the error's message. Kept as the oracle the typed
    /// classification must agree with, so traces do not change.
    fn searched(message: &str) -> &'static str {
        let has = |word| message.contains(word);
        if has("Expired") || has("expired") {
            "expired"
        } else if has("NotValidYet") {
            "not_yet_valid"
        } else if has("Revoked") || has("revoked") {
            "revoked"
        } else if has("UnknownIssuer") {
            "unknown_issuer"
        } else if has("CertificateRequired") || has("NoCertificatesPresented") {
            "no_certificate"
        } else {
            "other"
        }
    }

    #[test]
    fn typed_reasons_agree_with_the_words_the_trace_was_searched_for() {
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_767_225_600));
        let earlier = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_767_225_000));
        let errors = [
            rustls::Error::InvalidCertificate(C::Expired),
            rustls::Error::InvalidCertificate(C::ExpiredContext {
                time,
                not_after: earlier,
            }),
            rustls::Error::InvalidCertificate(C::NotValidYet),
            rustls::Error::InvalidCertificate(C::NotValidYetContext {
                time: earlier,
                not_before: time,
            }),
            rustls::Error::InvalidCertificate(C::Revoked),
            rustls::Error::InvalidCertificate(C::UnknownIssuer),
            rustls::Error::InvalidCertificate(C::BadSignature),
            rustls::Error::InvalidCertificate(C::NotValidForName),
            rustls::Error::InvalidCertificate(C::ApplicationVerificationFailure),
            rustls::Error::AlertReceived(Alert::CertificateExpired),
            rustls::Error::AlertReceived(Alert::CertificateRevoked),
            rustls::Error::AlertReceived(Alert::CertificateRequired),
            rustls::Error::AlertReceived(Alert::UnknownCA),
            rustls::Error::AlertReceived(Alert::BadCertificate),
            rustls::Error::NoCertificatesPresented,
            rustls::Error::DecryptError,
            rustls::Error::General("unreachable state".into()),
        ];
        for error in errors {
            let wrapped = io::Error::new(io::ErrorKind::InvalidData, error);
            let failure = TlsFailure::handshake(&wrapped);
            let mesh = MeshError::Tls(failure.clone());
            assert_eq!(
                mesh.to_string(),
                format!("tls: {wrapped}"),
                "the message is kept"
            );
            assert_eq!(
                failure.trace_reason(),
                searched(&mesh.to_string()),
                "{failure:?}"
            );
        }
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(TlsFailure::handshake(&eof).trace_reason(), "other");
    }

    #[test]
    fn failures_are_typed_by_what_rustls_refused() {
        let wrap = |e: rustls::Error| TlsFailure::handshake(&io::Error::other(e));
        assert!(matches!(
            wrap(rustls::Error::InvalidCertificate(C::Revoked)),
            TlsFailure::Revoked { .. }
        ));
        assert!(matches!(
            wrap(rustls::Error::AlertReceived(Alert::CertificateExpired)),
            TlsFailure::Expired { .. }
        ));
        assert!(matches!(
            wrap(rustls::Error::InvalidCertificate(
                C::ApplicationVerificationFailure
            )),
            TlsFailure::WrongIdentity { .. }
        ));
        assert!(matches!(
            wrap(rustls::Error::NoCertificatesPresented),
            TlsFailure::NoCertificate { alert: false, .. }
        ));
    }
}
