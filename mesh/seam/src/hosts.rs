//! The host names every run has, whatever its scenario. The engine names
//! hosts with them and the checks look events up by them, so both spell
//! them from here.

/// The certificate authority.
pub const CA: &str = "ca";
/// The control plane.
pub const CONTROL: &str = "control";
/// The load generator: the client whose return ends a run.
pub const LOADGEN: &str = "loadgen";
/// Applies scheduled config changes and rotations through the control plane.
pub const OPERATOR: &str = "operator";
/// The simulator itself, as the host of the fault events it records.
pub const SIM: &str = "sim";
