//! Where a run came from (`summary.json`'s provenance), and whether two
//! runs can be compared.

use reports::Provenance;

/// This binary's provenance, with the hash of the scenario text as run
/// (`None` for runs without a scenario, such as `meshsim load`).
pub(crate) fn of(scenario_text: Option<&str>) -> Provenance {
    Provenance {
        meshsim_version: env!("CARGO_PKG_VERSION").to_owned(),
        source_revision: env!("MESHSIM_REVISION").to_owned(),
        scenario_sha256: scenario_text.map(spec::scenario_sha256).unwrap_or_default(),
        platform: format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    }
}
