//! `--otlp-endpoint URL`: sends a run's spans to an OpenTelemetry
//! collector as OTLP/HTTP JSON (`POST URL`, `content-type:
//! application/json`), e.g. `http://127.0.0.1:4318/v1/traces`. Plain
//! HTTP only: a collector on the same machine or network, as an agent is.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Uri};

/// How long the export may take, connect included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the endpoint before the run, so a typo fails fast (exit 2).
pub fn parse_endpoint(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("--otlp-endpoint '{text}': {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "--otlp-endpoint '{text}': expected http://HOST:PORT/v1/traces"
        ));
    }
    Ok(uri)
}

/// POSTs `document` to `endpoint`; an answer other than 2xx is an error.
pub fn export(endpoint: &Uri, document: &serde_json::Value) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let body = Bytes::from(serde_json::to_vec(document)?);
    let status = runtime.block_on(async {
        tokio::time::timeout(EXPORT_TIMEOUT, post(endpoint, body))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {EXPORT_TIMEOUT:?}"))?
    });
    let status = status.with_context(|| format!("sending traces to {endpoint}"))?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{endpoint} answered {status} to the traces"
    );
    Ok(())
}

async fn post(endpoint: &Uri, body: Bytes) -> anyhow::Result<u16> {
    let authority = endpoint.authority().context("no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(endpoint.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(mesh::http::Body::from(body))?;
    let response = mesh::client::pool::send_once(Box::new(stream), &request, 64 * 1024).await?;
    Ok(response.status().as_u16())
}
