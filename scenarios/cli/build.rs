//! Records the source revision the binary is built from, for
//! `summary.json`'s `source_revision`: the `MESHSIM_REVISION` environment
//! variable if set (a release tarball, a CI system that knows its commit),
//! else `git rev-parse HEAD`, else `unknown` (not a git checkout, no git).
//! Read it with `env!("MESHSIM_REVISION")`.
//!
//! Also links both binaries with packed relative relocations (`DT_RELR`)
//! on Linux with glibc: a position-independent binary otherwise carries
//! 24 bytes per pointer to fix up at start (23,000 of them in
//! `meshsim-proxy`), and the dynamic loader reads all of them, which was
//! half a megabyte resident in every idle sidecar (BENCHMARKS.md, "Issue
//! 21"). Needs binutils 2.38 and glibc 2.36 (older linkers ignore it).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MESHSIM_REVISION");
    let revision = std::env::var("MESHSIM_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MESHSIM_REVISION={}", revision.trim());
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// HEAD's commit, and tells cargo to rerun when HEAD or its branch moves.
fn git_head() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    // A missing file would make cargo rerun this on every build.
    let watch = |path: PathBuf| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(PathBuf::from(git_dir).join("HEAD"));
    }
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let common = std::fs::canonicalize(&common).unwrap_or_else(|_| PathBuf::from(&common));
        watch(common.join(branch));
        watch(common.join("packed-refs"));
    }
    Some(head)
}
