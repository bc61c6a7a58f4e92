//! `meshsim certs issue`: a CA client, like `spire-agent api fetch x509
//! -write`. It generates a key here, sends only a CSR (with the identity's
//! bootstrap token from the state directory) to the running CA, and writes
//! `cert.pem`, `key.pem` and `ca.pem` that curl and openssl can use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use engine::deploy;

/// `meshsim certs …`.
#[derive(Subcommand, Clone, Debug)]
pub enum CertsCommand {
    /// Obtain a certificate for an identity from the running mesh's CA.
    Issue(IssueArgs),
}

/// `meshsim certs issue`.
#[derive(Args, Clone, Debug)]
pub struct IssueArgs {
    /// The state directory of a running `meshsim up`.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// A SPIFFE ID, or a service account in the scenario's namespace
    /// (e.g. `loadgen`).
    #[arg(long)]
    pub identity: String,
    /// Where to write cert.pem, key.pem and ca.pem.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `meshsim certs …`.
pub fn run(command: CertsCommand) -> anyhow::Result<ExitCode> {
    let CertsCommand::Issue(args) = command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let issued = runtime
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                deploy::issue_certificate(&args.state_dir, &args.identity),
            )
            .await
        })
        .context("the CA did not answer within 20 s")?;
    let issued = match issued {
        Ok(issued) => issued,
        Err(deploy::DeployError::BadRequest(message)) => {
            return Err(crate::BadInput(message).into());
        }
        Err(e) => return Err(e.into()),
    };
    deploy::write_issued(&args.out, &issued)?;
    println!(
        "issued {} → {}/{{cert,key,ca}}.pem",
        issued.identity,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
