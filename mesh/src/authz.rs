//! Inbound authorization: path normalization and the policy matcher.
//!
//! Every path is normalized before anything matches on it, and the app is
//! handed the normalized path, so the proxy and the app can never disagree
//! about which resource a request names (Envoy CVE-2019-9901, Istio
//! CVE-2021-31920 and CVE-2021-39156, Consul CVE-2024-10005):
//! 1. the fragment is dropped (and the query set aside);
//! 2. percent-encoded unreserved characters are decoded (`%2E` → `.`);
//! 3. an encoded `/` or `\` (`%2F`, `%5C`), a raw `\`, a bad escape or a
//!    byte outside visible ASCII refuses the request outright;
//! 4. runs of slashes are merged;
//! 5. `.` and `..` segments are resolved (never above the root).
//!
//! A policy is deny rules, then allow rules; once a policy exists a request
//! that no allow rule matches is denied. A denial is a bare 403.

use crate::config::{AuthorizationPolicy, AuthzRule};

/// Why a path was refused before any rule saw it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// Not origin-form (`/…`).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// `%2F` or `%5C`: an encoded separator would mean two different paths
    /// to the proxy and the app.
    #[error("encoded '/' or '\\' in the path")]
    EncodedSeparator,
    /// A raw backslash (some servers treat it as a separator).
    #[error("backslash in the path")]
    Backslash,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// A control character, space or non-ASCII byte.
    #[error("invalid character in the path")]
    BadCharacter,
}

/// A request target split into its normalized path and untouched query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalized path (always starts with `/`).
    pub path: String,
    /// The query, without `?`, if there was one.
    pub query: Option<String>,
}

impl NormalizedTarget {
    /// Path and query as a request target (`/a/b?x=1`).
    pub fn to_target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Normalizes a raw request target (path, optional query and fragment).
pub fn normalize_target(raw: &str) -> Result<NormalizedTarget, PathRefused> {
    let without_fragment = raw.split_once('#').map_or(raw, |(before, _)| before);
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (without_fragment, None),
    };
    Ok(NormalizedTarget {
        path: normalize_path(path)?,
        query,
    })
}

/// Normalizes a path (no query, no fragment expected; a fragment is dropped).
pub fn normalize_path(raw: &str) -> Result<String, PathRefused> {
    let raw = raw.split_once('#').map_or(raw, |(before, _)| before);
    if !raw.starts_with('/') {
        return Err(PathRefused::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    Ok(resolve_dots(&decoded))
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` of unreserved characters, keeps other escapes (upper-cased
/// hex, so `%3a` and `%3A` compare equal), refuses separators.
fn decode_unreserved(raw: &str) -> Result<String, PathRefused> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(PathRefused::BadEscape);
                };
                let value = high * 16 + low;
                if value == b'/' || value == b'\\' {
                    return Err(PathRefused::EncodedSeparator);
                }
                if is_unreserved(value) {
                    out.push(value as char);
                } else {
                    out.push_str(&format!("%{value:02X}"));
                }
                index += 3;
            }
            b'\\' => return Err(PathRefused::Backslash),
            0x21..=0x7e => {
                out.push(byte as char);
                index += 1;
            }
            _ => return Err(PathRefused::BadCharacter),
        }
    }
    Ok(out)
}

/// Merges slashes and resolves dot segments; `..` at the root stays there.
fn resolve_dots(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for segment in &segments {
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    // A trailing slash, or a trailing dot segment, names a directory.
    let directory = path.ends_with('/')
        || segments
            .last()
            .is_some_and(|last| *last == "." || *last == "..");
    if out.is_empty() || (directory && !kept.is_empty()) {
        out.push('/');
    }
    out
}

/// Matches an Istio-style pattern: exact, `*`, `prefix*` or `*suffix`.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else {
        pattern == value
    }
}

/// What the policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Forward to the app.
    Allow,
    /// 403.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

fn rule_matches(rule: &AuthzRule, principal: &str, method: &str, path: &str) -> bool {
    let any = |patterns: &[String], value: &str| {
        patterns.is_empty() || patterns.iter().any(|p| pattern_matches(p, value))
    };
    let none =
        |patterns: &[String], value: &str| !patterns.iter().any(|p| pattern_matches(p, value));
    any(&rule.principals, principal)
        && none(&rule.not_principals, principal)
        && (rule.methods.is_empty() || rule.methods.iter().any(|m| m == method))
        && !rule.not_methods.iter().any(|m| m == method)
        && any(&rule.paths, path)
        && none(&rule.not_paths, path)
}

/// Evaluates a policy for a caller, a method and an already normalized
/// path: any deny rule denies; otherwise any allow rule allows; otherwise
/// deny.
pub fn evaluate(
    policy: &AuthorizationPolicy,
    principal: &str,
    method: &str,
    normalized_path: &str,
) -> Verdict {
    let hit = |rules: &[AuthzRule]| {
        rules
            .iter()
            .any(|r| rule_matches(r, principal, method, normalized_path))
    };
    if hit(&policy.deny) {
        Verdict::Deny
    } else if hit(&policy.allow) {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path-normalization corpus of notes/anchors.md (Envoy
    /// CVE-2019-9901, Istio CVE-2021-31920/39156, Consul CVE-2024-10005,
    /// and istio/istio tests/integration/security/authz_test.go), each with
    /// what the proxy must make of it.
    const CORPUS: &[(&str, Result<&str, PathRefused>)] = &[
        ("/public/../private", Ok("/private")),
        ("/public/./../private", Ok("/private")),
        ("/public/%2E%2E/private", Ok("/private")),
        ("/public/%2e%2e/private", Ok("/private")),
        ("/public/%2e/%2e%2e/private", Ok("/private")),
        ("/public/%2E/%2E%2E/private", Ok("/private")),
        ("//private", Ok("/private")),
        ("///public/..//private", Ok("/private")),
        ("/public%2F..%2Fprivate", Err(PathRefused::EncodedSeparator)),
        ("/public%2f..%2fprivate", Err(PathRefused::EncodedSeparator)),
        ("/public/..%2Fprivate", Err(PathRefused::EncodedSeparator)),
        ("/public%5C..%5Cprivate", Err(PathRefused::EncodedSeparator)),
        ("/public%5c..%5cprivate", Err(PathRefused::EncodedSeparator)),
        ("/public\\..\\private", Err(PathRefused::Backslash)),
        ("/private#/public", Ok("/private")),
        ("/public/../private#fragment", Ok("/private")),
        ("/public/..", Ok("/")),
        ("/public/.", Ok("/public/")),
        ("/../../private", Ok("/private")),
        ("/%70ublic/ok", Ok("/public/ok")),
        (
            "/public/%252e%252e/private",
            Ok("/public/%252e%252e/private"),
        ),
        ("/public/%zz", Err(PathRefused::BadEscape)),
        ("/public/%2", Err(PathRefused::BadEscape)),
        ("/public/a b", Err(PathRefused::BadCharacter)),
        ("public", Err(PathRefused::NotAbsolute)),
        ("/public", Ok("/public")),
        ("/public/", Ok("/public/")),
        ("/", Ok("/")),
    ];

    #[test]
    fn normalizer_handles_the_whole_cve_corpus() {
        for (raw, expected) in CORPUS {
            let got = normalize_path(raw);
            let expected = expected.clone().map(str::to_owned);
            assert_eq!(got, expected, "normalizing {raw:?}");
        }
    }

    fn public_only() -> AuthorizationPolicy {
        AuthorizationPolicy {
            allow: vec![AuthzRule {
                paths: vec!["/public*".into()],
                ..AuthzRule::default()
            }],
            deny: vec![],
        }
    }

    #[test]
    fn public_only_rule_denies_every_bypass_in_the_corpus() {
        let policy = public_only();
        for (raw, _) in CORPUS {
            let verdict = match normalize_path(raw) {
                Ok(path) => evaluate(&policy, "spiffe://td/ns/x/sa/rogue", "GET", &path),
                Err(_) => Verdict::Deny,
            };
            let should_allow = matches!(
                *raw,
                "/%70ublic/ok"
                    | "/public/%252e%252e/private"
                    | "/public"
                    | "/public/"
                    | "/public/."
            );
            let expected = if should_allow {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            assert_eq!(verdict, expected, "{raw:?}");
        }
    }

    #[test]
    fn queries_are_kept_and_fragments_dropped() {
        let target = normalize_target("/a/./b?x=1/../2#frag").unwrap();
        assert_eq!(target.path, "/a/b");
        assert_eq!(target.query.as_deref(), Some("x=1/../2"));
        assert_eq!(target.to_target(), "/a/b?x=1/../2");
    }

    #[test]
    fn principals_match_exact_prefix_and_suffix() {
        let id = "spiffe://rec.meshsim/ns/rec/sa/gateway";
        assert!(pattern_matches(id, id));
        assert!(pattern_matches("*", id));
        assert!(pattern_matches("spiffe://rec.meshsim/ns/rec/*", id));
        assert!(pattern_matches("*/sa/gateway", id));
        assert!(!pattern_matches("*/sa/gate", id));
        assert!(!pattern_matches("spiffe://other/*", id));
    }

    #[test]
    fn deny_wins_and_no_match_denies() {
        let policy = AuthorizationPolicy {
            allow: vec![AuthzRule {
                principals: vec!["*/sa/gateway".into()],
                ..AuthzRule::default()
            }],
            deny: vec![AuthzRule {
                methods: vec!["DELETE".into()],
                ..AuthzRule::default()
            }],
        };
        let gateway = "spiffe://td/ns/rec/sa/gateway";
        assert_eq!(evaluate(&policy, gateway, "GET", "/x"), Verdict::Allow);
        assert_eq!(evaluate(&policy, gateway, "DELETE", "/x"), Verdict::Deny);
        assert_eq!(
            evaluate(&policy, "spiffe://td/ns/rec/sa/market", "GET", "/x"),
            Verdict::Deny
        );
        assert_eq!(
            evaluate(&AuthorizationPolicy::default(), gateway, "GET", "/x"),
            Verdict::Deny,
            "an empty policy denies everything"
        );
    }

    #[test]
    fn not_paths_carve_paths_out_of_a_rule() {
        let policy = AuthorizationPolicy {
            allow: vec![AuthzRule {
                paths: vec!["/api/*".into()],
                not_paths: vec!["/api/admin*".into()],
                ..AuthzRule::default()
            }],
            deny: vec![],
        };
        let caller = "spiffe://td/ns/rec/sa/gateway";
        assert_eq!(
            evaluate(&policy, caller, "GET", "/api/quote"),
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&policy, caller, "GET", "/api/admin/x"),
            Verdict::Deny
        );
        assert_eq!(evaluate(&policy, caller, "GET", "/other"), Verdict::Deny);
    }
}
