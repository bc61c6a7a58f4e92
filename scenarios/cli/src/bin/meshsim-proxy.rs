//! `meshsim-proxy`: one sidecar and nothing else, for `meshsim up`'s
//! processes (issue 21).
//!
//! The full `meshsim` binary carries the simulator, the reports, the search
//! and every command. A sidecar maps whatever code pages it touches, and in
//! a 120 MB binary that was most of its resident memory. This binary links
//! only what `engine::deploy::sidecar_software` reaches (the mesh crate,
//! never the scenario format, the apps or the install), and
//! `meshsim proxy` hands over to it when it sits beside `meshsim`
//! (`serve::proxy`), so `up` and scripts keep naming one binary.
//!
//! Usage: the same command line as `meshsim`'s:
//! `meshsim-proxy proxy <SERVICE> [--replica N] --state-dir DIR [--parent-pipe]`
//! (so a process list still reads `proxy <SERVICE>`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "../serve.rs"]
#[allow(dead_code)]
mod serve;

/// The same allocator as `meshsim` (see its `main.rs` for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Failures that are the user's input: exit 2 (as `meshsim`).
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

const USAGE: &str = "Usage: meshsim-proxy proxy <SERVICE> [--replica <N>] --state-dir <DIR>

Runs one sidecar of a mesh `meshsim up` deployed (as `meshsim proxy`).

Arguments:
  <SERVICE>          The service (a `[[services]]` name of the scenario)

Options:
      --replica <N>      Which replica (host `<SERVICE>-<N>`) [default: 0]
      --state-dir <DIR>  The state directory `meshsim up` wrote
  -h, --help             Print help
  -V, --version          Print version";

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Proxy(serve::WorkloadArgs),
    Help,
    Version,
}

/// `meshsim proxy`'s command line, read by hand: clap's parser was a
/// quarter of a megabyte of code pages resident in every idle sidecar
/// (BENCHMARKS.md, "Issue 21"), for four arguments that `up` writes.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter().map(|arg| {
        arg.into_string()
            .map_err(|arg| format!("argument {arg:?} is not UTF-8"))
    });
    match args.next().transpose()?.as_deref() {
        Some("proxy") => {}
        Some("-h" | "--help" | "help") | None => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some(other) => return Err(format!("unrecognized subcommand '{other}'")),
    }
    let (mut service, mut replica, mut state_dir, mut parent_pipe) = (None, 0, None, false);
    while let Some(arg) = args.next().transpose()? {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| match inline.clone() {
            Some(value) => Ok(value),
            None => args
                .next()
                .transpose()?
                .ok_or_else(|| format!("a value is required for '{name}'")),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--replica" => {
                let text = value("--replica <N>")?;
                replica = text
                    .parse()
                    .map_err(|e| format!("invalid value '{text}' for '--replica <N>': {e}"))?;
            }
            "--state-dir" => state_dir = Some(PathBuf::from(value("--state-dir <DIR>")?)),
            "--parent-pipe" if inline.is_none() => parent_pipe = true,
            _ if !arg.starts_with('-') && service.is_none() => service = Some(arg),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    let service = service.ok_or("the argument '<SERVICE>' is required")?;
    let state_dir = state_dir.ok_or("the argument '--state-dir <DIR>' is required")?;
    Ok(Command::Proxy(serve::WorkloadArgs {
        service,
        replica,
        serve: serve::ServeArgs {
            state_dir,
            parent_pipe,
        },
    }))
}

fn main() -> ExitCode {
    let workload = match parse(std::env::args_os().skip(1)) {
        Ok(Command::Proxy(workload)) => workload,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("meshsim-proxy {}", env!("MESHSIM_REVISION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match serve::proxy_here(workload) {
        Ok(code) => code,
        Err(error) if error.is::<BadInput>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
        }
    }
}

/// As `meshsim`'s real-time processes log: `RUST_LOG`, else `info`.
/// Without `RUST_LOG` a plain level filter: the same events, without
/// paging in the directive parser.
fn init_logging() {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match std::env::var_os(tracing_subscriber::EnvFilter::DEFAULT_ENV) {
        Some(_) => builder
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init(),
        None => builder
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    /// What `meshsim proxy` passes when it hands over (`serve::proxy`).
    #[test]
    fn reads_the_command_line_meshsim_proxy_hands_over() {
        let Ok(Command::Proxy(args)) =
            parse_words("proxy backend --replica 2 --state-dir /tmp/m --parent-pipe")
        else {
            panic!("parses");
        };
        assert_eq!(args.service, "backend");
        assert_eq!(args.replica, 2);
        assert_eq!(args.serve.state_dir, PathBuf::from("/tmp/m"));
        assert!(args.serve.parent_pipe);
        let Ok(Command::Proxy(args)) = parse_words("proxy --state-dir=/d client") else {
            panic!("parses");
        };
        assert_eq!((args.service.as_str(), args.replica), ("client", 0));
        assert!(!args.serve.parent_pipe);
    }

    #[test]
    fn refuses_what_meshsim_proxy_would() {
        for line in [
            "proxy backend",
            "proxy --state-dir /d",
            "proxy a b --state-dir /d",
            "proxy a --replica x --state-dir /d",
            "proxy a --state-dir",
            "proxy a --bogus --state-dir /d",
            "ca serve --state-dir /d",
        ] {
            assert!(parse_words(line).is_err(), "{line}");
        }
        assert!(matches!(parse_words("--version"), Ok(Command::Version)));
        assert!(matches!(parse_words("proxy --help"), Ok(Command::Help)));
    }
}
