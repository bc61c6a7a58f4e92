//! Importing a team's mesh policy as written: Istio, Linkerd and Gateway
//! API YAML (and Kubernetes `Deployment` replica counts) become meshsim's
//! `[mesh.services]` policy.
//!
//! One file per source (`istio.rs`, `linkerd.rs`, `gateway.rs`,
//! `kube.rs`); `yaml.rs` parses and keeps positions; `common.rs` holds
//! what they share; `render.rs` writes the result in the scenario format,
//! which is also how a scenario takes it in, so `meshsim import mesh`
//! prints exactly what a run uses.
//!
//! Every key is either mapped, refused with a reason (when ignoring it
//! would change which requests match or who is allowed), or warned about
//! with its `file:line:column` (read but not modelled). Semantics that
//! differ between the source mesh and meshsim are settled explicitly in
//! the output and listed in `Imported::notes`.

mod common;
mod gateway;
mod isotope;
mod istio;
mod kube;
mod linkerd;
mod render;
mod yaml;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use common::ImportContext;
pub use isotope::isotope_scenario;
pub use yaml::Diagnostic;

use common::Build;
use yaml::{Node, Sink, Value};

use crate::mesh::ServicePolicySpec;
use crate::{Locator, Scenario, SpecError};

/// What the import made of a set of files.
#[derive(Debug, Default)]
pub struct Imported {
    /// Policy per service, in the scenario format (`[mesh.services.NAME]`).
    pub services: toml::Table,
    /// Replica counts from `Deployment`s.
    pub replicas: BTreeMap<String, u32>,
    /// Choices the import made where the meshes differ, one line each.
    pub notes: Vec<String>,
    /// Fields read and not modelled.
    pub warnings: Vec<Diagnostic>,
}

impl Imported {
    /// The `[mesh]` TOML a user can paste into a scenario.
    pub fn to_toml(&self) -> String {
        render::document(self)
    }
}

/// Reads `files` in order and imports every document in them.
pub fn import_files(files: &[PathBuf], context: &ImportContext) -> Result<Imported, SpecError> {
    let mut build = Build::default();
    let mut warnings = Vec::new();
    let mut linkerd = linkerd::Pending::default();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| SpecError::Read {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let mut sink = Sink::new(file);
        for document in yaml::parse_documents(&sink, &text)? {
            import_document(&mut sink, context, &mut build, &mut linkerd, &document)?;
        }
        warnings.append(&mut sink.warnings);
    }
    linkerd.resolve(context, &mut build)?;
    Ok(finish(build, warnings))
}

/// A document, or each item of a `kind: List`.
fn import_document(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    linkerd: &mut linkerd::Pending,
    document: &Node,
) -> Result<(), SpecError> {
    let fields = document.fields(sink, "document")?;
    let kind_node = fields.require(sink, "kind")?;
    let kind = kind_node.str(sink, "kind")?;
    let api_version = fields
        .require(sink, "apiVersion")?
        .str(sink, "apiVersion")?;
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if kind == "List" {
        for item in fields.require(sink, "items")?.seq(sink, "items")? {
            import_document(sink, context, build, linkerd, item)?;
        }
        fields.ignore("metadata");
        fields.finish(sink);
        return Ok(());
    }
    let metadata = fields.require(sink, "metadata")?;
    let meta = metadata.fields(sink, "metadata")?;
    let name = meta
        .require(sink, "name")?
        .str(sink, "metadata.name")?
        .to_owned();
    let namespace = match meta.get("namespace") {
        Some(ns) => Some(ns.str(sink, "metadata.namespace")?.to_owned()),
        None => None,
    };
    // Labels, annotations and the rest describe the object, not traffic.
    for key in [
        "labels",
        "annotations",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ] {
        meta.ignore(key);
    }
    meta.finish(sink);
    fields.ignore("status");
    let spec = fields.get("spec");
    let spec_or_empty = || {
        spec.cloned().unwrap_or(Node {
            at: fields.at(),
            value: Value::Null,
        })
    };
    match (group, kind) {
        ("networking.istio.io", "VirtualService") => {
            istio::virtual_service(sink, context, build, &name, &spec_or_empty())?
        }
        ("networking.istio.io", "DestinationRule") => {
            istio::destination_rule(sink, context, build, &spec_or_empty())?
        }
        ("security.istio.io", "AuthorizationPolicy") => {
            istio::authorization_policy(sink, context, build, &spec_or_empty())?
        }
        ("security.istio.io", "PeerAuthentication") => {
            istio::peer_authentication(sink, context, &spec_or_empty())?
        }
        ("linkerd.io", "ServiceProfile") => {
            linkerd::service_profile(sink, context, build, &name, &spec_or_empty())?
        }
        (
            "policy.linkerd.io",
            "Server" | "AuthorizationPolicy" | "MeshTLSAuthentication" | "HTTPRoute",
        ) => {
            let object = linkerd::Object {
                kind,
                name: &name,
                namespace: namespace.as_deref(),
            };
            linkerd.read(sink, context, build, object, &spec_or_empty())?
        }
        ("gateway.networking.k8s.io", "HTTPRoute") => {
            gateway::http_route(sink, context, build, &name, &spec_or_empty())?
        }
        ("", "Service") => kube::service(sink, context, &name, &spec_or_empty())?,
        ("apps", "Deployment") => kube::deployment(sink, context, build, &name, &spec_or_empty())?,
        _ => {
            return Err(sink.error(
                kind_node.at,
                format!(
                    "unknown kind \"{kind}\" ({api_version}); meshsim imports VirtualService, DestinationRule, AuthorizationPolicy and PeerAuthentication (Istio), ServiceProfile, Server, AuthorizationPolicy, MeshTLSAuthentication and HTTPRoute (Linkerd), HTTPRoute (Gateway API), Service and Deployment"
                ),
            ));
        }
    }
    fields.finish(sink);
    Ok(())
}

/// Settles what could only be known once every document was read, and
/// validates each service's policy as the control plane would.
fn finish(build: Build, warnings: Vec<Diagnostic>) -> Imported {
    let mut notes = Vec::new();
    let mut services = toml::Table::new();
    for (name, mut assembly) in build.services {
        if assembly.istio && assembly.traffic_from.is_none() {
            assembly.config.load_balancer = mesh::config::LoadBalancer::LeastRequest;
            notes.push(format!("{name}: no DestinationRule names a balancer, so Istio's default LEAST_REQUEST applies (meshsim's own default is peak-EWMA)"));
        }
        if !assembly.http_routes.is_empty() {
            assembly
                .http_routes
                .sort_by_key(|(precedence, _)| *precedence);
            assembly.config.routes = assembly.http_routes.into_iter().map(|(_, r)| r).collect();
        }
        match (assembly.istio_authz, assembly.linkerd_authz) {
            (Some(istio), _) => {
                let (policy, allow_all) = istio::finish_authz(istio);
                if allow_all {
                    notes.push(format!(
                        "{name}: Istio has only DENY policies for it, so everything they do not deny is allowed; meshsim's authorization is default-deny, so the import writes that as the explicit allow rule principals = [\"*\"]"
                    ));
                }
                assembly.config.authorization = Some(policy);
            }
            (None, Some(allow)) => {
                notes.push(format!(
                    "{name}: a Linkerd Server selects it, so it is default-deny and only its AuthorizationPolicies allow (as in Linkerd)"
                ));
                assembly.config.authorization = Some(mesh::config::AuthorizationPolicy {
                    allow,
                    deny: Vec::new(),
                });
            }
            (None, None) => {}
        }
        services.insert(name, toml::Value::Table(render::service(&assembly.config)));
    }
    let replicas = build
        .replicas
        .into_iter()
        .map(|(name, (replicas, _))| (name, replicas))
        .collect();
    Imported {
        services,
        replicas,
        notes,
        warnings,
    }
}

/// Expands a path with `*` and `?` in its file name, relative to `base`;
/// matches are sorted, so the import order is the same everywhere.
pub fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("import \"{pattern}\" names no file"))?;
    if !name.contains(['*', '?']) {
        return if full.is_file() {
            Ok(vec![full])
        } else {
            Err(format!(
                "import \"{pattern}\": no such file ({})",
                full.display()
            ))
        };
    }
    let dir = full.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("import \"{pattern}\": cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| glob_matches(name.as_bytes(), n.as_bytes()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "import \"{pattern}\" matches no file in {}",
            dir.display()
        ));
    }
    Ok(files)
}

fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_matches(&pattern[1..], name)
                || (!name.is_empty() && glob_matches(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The files a list of `import` entries names, in order, each error
/// located at its entry.
fn files_of(
    scenario_path: &Path,
    entries: &[toml::Spanned<String>],
    locate: &Locator<'_>,
) -> Result<Vec<PathBuf>, SpecError> {
    let base = scenario_path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    for entry in entries {
        let found =
            expand(base, entry.get_ref()).map_err(|m| locate.error(Some(entry.span()), m))?;
        files.extend(found);
    }
    Ok(files)
}

/// Runs `[mesh] import` and each variant's `import`, merging the imported
/// policies into the scenario; a policy both imported and written in TOML
/// is an error (one source per service).
pub(crate) fn apply(
    scenario: &mut Scenario,
    path: &Path,
    locate: &Locator<'_>,
) -> Result<(), SpecError> {
    let context = ImportContext {
        services: scenario
            .service_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        trust_domain: scenario.mesh.trust_domain.clone(),
        namespace: scenario.mesh.namespace.clone(),
    };
    let strict = scenario.mesh.import_strict;
    let mut warnings = Vec::new();
    if !scenario.mesh.import.is_empty() {
        let span = span_of(&scenario.mesh.import);
        let files = files_of(path, &scenario.mesh.import, locate)?;
        scenario.inputs.extend(files.iter().cloned());
        let imported = import_files(&files, &context)?;
        replicas_from(scenario, &imported, locate)?;
        merge(&mut scenario.mesh.services, &imported, locate, span)?;
        warnings.extend(imported.warnings);
    }
    for index in 0..scenario.mesh.variants.len() {
        let variant = &scenario.mesh.variants[index];
        if variant.import.is_empty() {
            continue;
        }
        let span = span_of(&variant.import);
        let files = files_of(path, &variant.import, locate)?;
        scenario.inputs.extend(files.iter().cloned());
        let imported = import_files(&files, &context)?;
        merge(
            &mut scenario.mesh.variants[index].services,
            &imported,
            locate,
            span,
        )?;
        warnings.extend(imported.warnings);
    }
    warnings.sort();
    warnings.dedup();
    if strict && let Some(first) = warnings.first() {
        let mut error = first.clone();
        error.message = format!("{} (import_strict = true)", error.message);
        return Err(error.into_error());
    }
    scenario.mesh.import_warnings = warnings;
    Ok(())
}

fn span_of(entries: &[toml::Spanned<String>]) -> Range<usize> {
    entries.first().map_or(0..0, |e| e.span())
}

fn merge(
    services: &mut BTreeMap<toml::Spanned<String>, ServicePolicySpec>,
    imported: &Imported,
    locate: &Locator<'_>,
    span: Range<usize>,
) -> Result<(), SpecError> {
    for (name, table) in &imported.services {
        if let Some((written, _)) = services.get_key_value(name.as_str()) {
            return Err(locate.error(
                Some(written.span()),
                format!("the policy for \"{name}\" is both written here and imported; keep one (run `meshsim import mesh` to see the imported one)"),
            ));
        }
        let policy: ServicePolicySpec = table.clone().try_into().map_err(|e| {
            locate.error(
                Some(span.clone()),
                format!("internal: the imported policy for \"{name}\" does not read back: {e}"),
            )
        })?;
        services.insert(toml::Spanned::new(span.clone(), name.clone()), policy);
    }
    Ok(())
}

/// `Deployment` replicas give a service's replica count when its
/// `[[services]]` entry writes none; a different written count is refused
/// rather than silently replaced, since the manifests are what runs.
fn replicas_from(
    scenario: &mut Scenario,
    imported: &Imported,
    locate: &Locator<'_>,
) -> Result<(), SpecError> {
    let written: Vec<bool> = match locate.text.parse::<toml_edit::DocumentMut>() {
        Ok(document) => (0..scenario.services.len())
            .map(|i| {
                document
                    .get("services")
                    .and_then(|s| s.get(i))
                    .is_some_and(|service| service.get("replicas").is_some())
            })
            .collect(),
        Err(_) => vec![true; scenario.services.len()],
    };
    for (name, replicas) in &imported.replicas {
        let Some(index) = scenario
            .services
            .iter()
            .position(|s| s.name.get_ref() == name)
        else {
            continue;
        };
        let service = &mut scenario.services[index];
        if !written[index] {
            service.replicas = *replicas;
        } else if service.replicas != *replicas {
            return Err(locate.error(
                Some(service.name.span()),
                format!(
                    "service \"{name}\" has replicas = {} but its imported Deployment has {replicas}; make them agree or drop one",
                    service.replicas
                ),
            ));
        }
    }
    Ok(())
}

impl Scenario {
    /// Warnings from `[mesh] import`: fields read but not modelled.
    pub fn import_warnings(&self) -> &[Diagnostic] {
        &self.mesh.import_warnings
    }
}

#[cfg(test)]
mod tests;
