//! The kinds of trace event that more than one crate names: the component
//! that records an event and the check that looks for it spell the kind
//! from here, so a renamed event cannot silently blind a check.

/// `fault`
pub const FAULT: &str = "fault";
/// `cert.audit`
pub const CERT_AUDIT: &str = "cert.audit";
/// `cert.rotation`
pub const CERT_ROTATION: &str = "cert.rotation";
/// `cert.renewed`
pub const CERT_RENEWED: &str = "cert.renewed";
/// `cert.renew_failed`
pub const CERT_RENEW_FAILED: &str = "cert.renew_failed";
/// `cert.peer_accepted`
pub const CERT_PEER_ACCEPTED: &str = "cert.peer_accepted";
/// `cert.peer_rejected`
pub const CERT_PEER_REJECTED: &str = "cert.peer_rejected";
/// `cert.bundle`
pub const CERT_BUNDLE: &str = "cert.bundle";
/// `discovery.update`
pub const DISCOVERY_UPDATE: &str = "discovery.update";
/// `discovery.disconnected`
pub const DISCOVERY_DISCONNECTED: &str = "discovery.disconnected";
/// `discovery.connected`
pub const DISCOVERY_CONNECTED: &str = "discovery.connected";
/// `control.apply`
pub const CONTROL_APPLY: &str = "control.apply";
/// `control.version`
pub const CONTROL_VERSION: &str = "control.version";
/// `control.apply_refused`
pub const CONTROL_APPLY_REFUSED: &str = "control.apply_refused";
/// `control.register_refused`
pub const CONTROL_REGISTER_REFUSED: &str = "control.register_refused";
/// `control.recovered`
pub const CONTROL_RECOVERED: &str = "control.recovered";
/// `control.self_preservation`
pub const CONTROL_SELF_PRESERVATION: &str = "control.self_preservation";
/// `control.listen`
pub const CONTROL_LISTEN: &str = "control.listen";
/// `ca.self_certify_failed`
pub const CA_SELF_CERTIFY_FAILED: &str = "ca.self_certify_failed";
/// `ca.refuse`
pub const CA_REFUSE: &str = "ca.refuse";
/// `ca.issue`
pub const CA_ISSUE: &str = "ca.issue";
/// `ca.start`
pub const CA_START: &str = "ca.start";
/// `ca.rotate`
pub const CA_ROTATE: &str = "ca.rotate";
/// `ca.listen`
pub const CA_LISTEN: &str = "ca.listen";
/// `tls.transcript`
pub const TLS_TRANSCRIPT: &str = "tls.transcript";
/// `run.aborted`
pub const RUN_ABORTED: &str = "run.aborted";
/// `load.done`
pub const LOAD_DONE: &str = "load.done";
/// `proxy.ready`
pub const PROXY_READY: &str = "proxy.ready";
/// `outbound.refused_remote`
pub const OUTBOUND_REFUSED_REMOTE: &str = "outbound.refused_remote";
/// `outbound.connect`
pub const OUTBOUND_CONNECT: &str = "outbound.connect";
/// `inbound.tls_reject`
pub const INBOUND_TLS_REJECT: &str = "inbound.tls_reject";
/// `inbound.authz_deny`
pub const INBOUND_AUTHZ_DENY: &str = "inbound.authz_deny";
/// `admin.refused`
pub const ADMIN_REFUSED: &str = "admin.refused";
/// `admin.listen`
pub const ADMIN_LISTEN: &str = "admin.listen";
/// `rec.store_opened`
pub const REC_STORE_OPENED: &str = "rec.store_opened";
/// `gateway.upstream_error`
pub const GATEWAY_UPSTREAM_ERROR: &str = "gateway.upstream_error";
