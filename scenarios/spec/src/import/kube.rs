//! Kubernetes workloads: `Service` names, `Deployment` names and replica
//! counts, and the label selectors policies use to pick workloads.

use super::common::{Build, ImportContext, Origin, known_service};
use super::yaml::{Node, Sink, Value};
use crate::SpecError;

/// The services a `selector` / `podSelector` picks. meshsim's workloads
/// carry one label, `app: <service>` (the convention of Istio's and
/// Linkerd's samples), so `matchLabels` must name `app`.
pub(crate) fn selected_services(
    sink: &mut Sink,
    context: &ImportContext,
    selector: &Node,
) -> Result<Vec<String>, SpecError> {
    let fields = selector.fields(sink, "selector")?;
    if let Some(expressions) = fields.get("matchExpressions") {
        return Err(sink.error(
            expressions.at,
            "matchExpressions are not modelled; select workloads with matchLabels: { app: SERVICE }",
        ));
    }
    let labels = fields.require(sink, "matchLabels")?;
    let label_fields = labels.fields(sink, "matchLabels")?;
    let app = label_fields.get("app").ok_or_else(|| {
        sink.error(
            labels.at,
            "meshsim selects workloads by the label `app: SERVICE`; this selector has no `app`",
        )
    })?;
    let service = app.str(sink, "app label")?.to_owned();
    known_service(sink, context, app.at, "selected workload", &service)?;
    if let Value::Map(entries) = &labels.value {
        for (key, _, _) in entries.iter().filter(|(k, _, _)| k != "app") {
            label_fields.unmodelled(
                sink,
                key,
                "meshsim workloads carry only the `app` label; the other labels are assumed to match",
            );
        }
    }
    label_fields.finish(sink);
    fields.finish(sink);
    Ok(vec![service])
}

/// A `Service`: its name must be a scenario service (service times and
/// apps come from the scenario); ports and selectors change nothing.
pub(crate) fn service(
    sink: &mut Sink,
    context: &ImportContext,
    name: &str,
    spec: &Node,
) -> Result<(), SpecError> {
    if !(context.services.is_empty() || context.services.iter().any(|s| s == name)) {
        sink.warn(
            spec.at,
            format!(
                "Service \"{name}\" is not simulated: the scenario declares no such [[services]] entry (services are {:?})",
                context.services
            ),
        );
        return Ok(());
    }
    let fields = spec.fields(sink, "Service.spec")?;
    for key in [
        "ports",
        "selector",
        "type",
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "sessionAffinity",
        "internalTrafficPolicy",
    ] {
        fields.ignore(key);
    }
    fields.finish(sink);
    Ok(())
}

/// A `Deployment`: its `replicas` becomes the service's replica count.
pub(crate) fn deployment(
    sink: &mut Sink,
    context: &ImportContext,
    build: &mut Build,
    name: &str,
    spec: &Node,
) -> Result<(), SpecError> {
    if !(context.services.is_empty() || context.services.iter().any(|s| s == name)) {
        sink.warn(
            spec.at,
            format!(
                "Deployment \"{name}\" is not simulated: the scenario declares no such [[services]] entry (services are {:?})",
                context.services
            ),
        );
        return Ok(());
    }
    let fields = spec.fields(sink, "Deployment.spec")?;
    // Kubernetes' default is one replica.
    let replicas = match fields.get("replicas") {
        Some(r) => {
            let value = r.int(sink, "replicas")?;
            if !(1..=1000).contains(&value) {
                return Err(sink.error(
                    r.at,
                    format!("replicas {value} is out of range; meshsim simulates 1 to 1000"),
                ));
            }
            value as u32
        }
        None => 1,
    };
    // The pod template (images, resources, probes) is the app, which the
    // scenario describes with its service time.
    for key in [
        "selector",
        "template",
        "strategy",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "minReadySeconds",
    ] {
        fields.ignore(key);
    }
    fields.finish(sink);
    build.replicas.insert(
        name.to_owned(),
        (
            replicas,
            Origin {
                file: sink.path.display().to_string(),
                at: spec.at,
            },
        ),
    );
    Ok(())
}
