//! The secret an app and its own sidecar share, where nothing else keeps
//! other local processes away from their loopback ports.
//!
//! In a pod, the app's port and the sidecar's outbound listener are
//! reachable only from inside the pod's network namespace. On a shared
//! loopback (`meshsim up` without namespaces) every local process can
//! reach them, so the two authenticate each other with a per-pod secret
//! drawn from the OS and kept on the pod's own disk (`pod-secret`, 0600 in
//! a 0700 directory):
//! * the app presents it to the outbound listener, which refuses callers
//!   without it (no open relay that lends the workload's identity);
//! * the inbound sidecar presents it to the app, which refuses requests
//!   without it (no way around the sidecar to a forged
//!   `x-meshsim-peer-identity`).
//!
//! A host whose disk has no secret (every simulated host) checks nothing:
//! the simulated network has no other local processes.

use seam::Disk;

/// The header that carries the secret between an app and its sidecar.
/// Never forwarded across the mesh.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-meshsim-pod-secret");

/// The file on the pod's disk.
pub const FILE: &str = "pod-secret";

/// A pod's secret.
#[derive(Clone)]
pub struct PodSecret(String);

impl std::fmt::Debug for PodSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PodSecret(..)")
    }
}

impl PodSecret {
    /// The pod's secret, if its disk holds one.
    pub fn load(disk: &dyn Disk) -> Option<PodSecret> {
        let bytes = disk.read(FILE).ok()??;
        let text = String::from_utf8(bytes).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| PodSecret(text.to_owned()))
    }

    /// The header value to present.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0).expect("hex is a valid header value")
    }

    /// Whether `headers` present this secret (compared in constant time).
    pub fn presented_in(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(HEADER)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), self.0.as_bytes()))
    }
}

/// Whether a request is admitted: always without a secret; with one, only
/// when the request presents it.
pub fn admits(secret: Option<&PodSecret>, headers: &http::HeaderMap) -> bool {
    secret.is_none_or(|s| s.presented_in(headers))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_itself_is_admitted() {
        let disk = seam::MemDisk::default();
        assert!(PodSecret::load(&disk).is_none());
        assert!(admits(None, &http::HeaderMap::new()), "no secret: no check");
        disk.write(FILE, b"00ff\n").unwrap();
        let secret = PodSecret::load(&disk).unwrap();
        let mut headers = http::HeaderMap::new();
        assert!(!admits(Some(&secret), &headers), "absent");
        headers.insert(HEADER, "00fe".parse().unwrap());
        assert!(!admits(Some(&secret), &headers), "wrong");
        headers.insert(HEADER, "00ff".parse().unwrap());
        assert!(admits(Some(&secret), &headers));
        assert_eq!(format!("{secret:?}"), "PodSecret(..)", "never logged");
    }
}
