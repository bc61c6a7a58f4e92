//! An independent authorization oracle.
//!
//! It decides, from the policy *as the scenario file wrote it*, whether a
//! caller may make a request, and shares no code with the proxy's matcher
//! or normalizer (`mesh::authz`): it is written from RFC 3986 and the
//! policy semantics directly, with a different algorithm (the RFC's
//! input/output-buffer `remove_dot_segments` where the proxy uses a segment
//! stack). Checks replay every decision the proxies made through it; any
//! disagreement is a bug in one of the two.

use spec::mesh::{AuthorizationSpec, AuthzRuleSpec};

/// Whether `principal` may make `method raw_target` under `policy`.
/// `None` policy: no policy, everything is allowed.
pub fn allows(
    policy: Option<&AuthorizationSpec>,
    principal: &str,
    method: &str,
    raw_target: &str,
) -> bool {
    let Some(policy) = policy else {
        return true;
    };
    let Some(path) = canonical_path(raw_target) else {
        return false;
    };
    let matches = |rule: &AuthzRuleSpec| {
        field_matches(&rule.principals, principal)
            && (rule.methods.is_empty() || rule.methods.iter().any(|m| m.as_str() == method))
            && field_matches(&rule.paths, &path)
    };
    !policy.deny.iter().any(matches) && policy.allow.iter().any(matches)
}

/// An empty list matches anything; otherwise one glob must.
fn field_matches(globs: &[String], value: &str) -> bool {
    globs.is_empty() || globs.iter().any(|glob| glob_matches(glob, value))
}

/// Istio string matching: `*` alone, a leading `*` (suffix match), a
/// trailing `*` (prefix match), or equality.
fn glob_matches(glob: &str, value: &str) -> bool {
    let bytes = glob.as_bytes();
    match (bytes.first(), bytes.last()) {
        _ if glob == "*" => true,
        (_, Some(b'*')) => {
            let stem = &glob[..glob.len() - 1];
            value.len() >= stem.len() && value.as_bytes()[..stem.len()] == *stem.as_bytes()
        }
        (Some(b'*'), _) => {
            let tail = &glob[1..];
            value.len() >= tail.len()
                && value.as_bytes()[value.len() - tail.len()..] == *tail.as_bytes()
        }
        _ => glob == value,
    }
}

/// The path a request target names, or `None` if it must be refused.
fn canonical_path(raw_target: &str) -> Option<String> {
    let end = raw_target
        .char_indices()
        .find(|(_, c)| *c == '?' || *c == '#')
        .map_or(raw_target.len(), |(i, _)| i);
    let path = &raw_target[..end];
    if !path.starts_with('/') {
        return None;
    }
    let decoded = decode(path)?;
    let mut merged = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    Some(remove_dot_segments(&merged))
}

/// Percent-decodes unreserved characters only; refuses encoded separators,
/// backslashes, malformed escapes and anything outside visible ASCII.
fn decode(path: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            let hex = rest.get(1..3)?;
            if !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            let value = u8::from_str_radix(hex, 16).ok()?;
            let decoded = value as char;
            if decoded == '/' || decoded == '\\' {
                return None;
            }
            if decoded.is_ascii_alphanumeric() || "-._~".contains(decoded) {
                out.push(decoded);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            rest = &rest[3..];
        } else {
            if c == '\\' || !c.is_ascii_graphic() {
                return None;
            }
            out.push(c);
            rest = &rest[1..];
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4, step by step, on an input and an output buffer.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_owned();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".into();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            drop_last_segment(&mut output);
        } else if input == "/.." {
            input = "/".into();
            drop_last_segment(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let next = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..next]);
            input.replace_range(..next, "");
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}

fn drop_last_segment(output: &mut String) {
    match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_only() -> AuthorizationSpec {
        AuthorizationSpec {
            allow: vec![AuthzRuleSpec {
                paths: vec!["/public*".into()],
                ..AuthzRuleSpec::default()
            }],
            deny: vec![],
        }
    }

    #[test]
    fn rfc_examples_resolve() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/public/.."), "/");
        assert_eq!(remove_dot_segments("/public/."), "/public/");
        assert_eq!(remove_dot_segments("/../../x"), "/x");
    }

    #[test]
    fn the_corpus_never_reaches_a_private_path() {
        let policy = public_only();
        for target in crate::rogue::corpus("/recs/available") {
            assert!(
                !allows(Some(&policy), "spiffe://x/ns/rec/sa/rogue", "GET", &target),
                "{target}"
            );
        }
        assert!(allows(
            Some(&policy),
            "spiffe://x/ns/rec/sa/rogue",
            "GET",
            "/public/ok"
        ));
        assert!(allows(Some(&policy), "p", "GET", "/%70ublic"));
        assert!(allows(None, "p", "DELETE", "/anything"));
    }

    #[test]
    fn principals_methods_and_deny_rules() {
        let policy = AuthorizationSpec {
            allow: vec![AuthzRuleSpec {
                principals: vec!["*/sa/gateway".into()],
                methods: vec!["GET".into(), "POST".into()],
                ..AuthzRuleSpec::default()
            }],
            deny: vec![AuthzRuleSpec {
                paths: vec!["/admin*".into()],
                ..AuthzRuleSpec::default()
            }],
        };
        let gateway = "spiffe://td/ns/rec/sa/gateway";
        assert!(allows(Some(&policy), gateway, "GET", "/recs"));
        assert!(!allows(Some(&policy), gateway, "DELETE", "/recs"));
        assert!(!allows(Some(&policy), gateway, "GET", "/admin/x"));
        assert!(!allows(Some(&policy), gateway, "GET", "/x/../admin"));
        assert!(!allows(
            Some(&policy),
            "spiffe://td/ns/rec/sa/market",
            "GET",
            "/recs"
        ));
    }
}
