//! One interface over both simulated worlds, so a composition root has one
//! run function and picks turmoil ([`SimWorld`]) or the event world
//! ([`EventWorld`]) by configuration.

use std::time::Duration;

use seam::HostEnv;

use crate::control::{ControlHook, NoControl};
use crate::event::{EventWorld, HostFuture};
use crate::faults::FaultSchedule;
use crate::world::{SimError, SimWorld};

/// A simulated world: hosts, clients, a run under a fault schedule.
pub trait World<'a> {
    /// The environment of `host` (valid outside and inside the host).
    fn env_for(&mut self, host: &str) -> HostEnv;
    /// Adds a restartable host; `software` is re-run after a crash.
    fn add_host(&mut self, name: &str, software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>);
    /// Adds a client; the run ends when every client returns.
    fn add_client(&mut self, name: &str, software: Box<dyn FnOnce(HostEnv) -> HostFuture + 'a>);
    /// Sim time elapsed.
    fn elapsed(&self) -> Duration;
    /// Runs until every client finishes, applying `faults` at their times
    /// and handing control actions to `control`.
    fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError>;
    /// [`Self::run_with`] without control actions.
    fn run(&mut self, faults: &FaultSchedule) -> Result<(), SimError> {
        self.run_with(faults, &mut NoControl)
    }
}

impl<'a> World<'a> for SimWorld<'a> {
    fn env_for(&mut self, host: &str) -> HostEnv {
        SimWorld::env_for(self, host)
    }
    fn add_host(&mut self, name: &str, software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>) {
        self.host(name, software);
    }
    fn add_client(&mut self, name: &str, software: Box<dyn FnOnce(HostEnv) -> HostFuture + 'a>) {
        self.client(name, software);
    }
    fn elapsed(&self) -> Duration {
        SimWorld::elapsed(self)
    }
    fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        SimWorld::run_with(self, faults, control)
    }
}

impl<'a> World<'a> for EventWorld<'a> {
    fn env_for(&mut self, host: &str) -> HostEnv {
        EventWorld::env_for(self, host)
    }
    fn add_host(&mut self, name: &str, software: Box<dyn Fn(HostEnv) -> HostFuture + 'a>) {
        self.add_boxed_host(name, software);
    }
    fn add_client(&mut self, name: &str, software: Box<dyn FnOnce(HostEnv) -> HostFuture + 'a>) {
        self.client(name, software);
    }
    fn elapsed(&self) -> Duration {
        EventWorld::elapsed(self)
    }
    fn run_with(
        &mut self,
        faults: &FaultSchedule,
        control: &mut dyn ControlHook,
    ) -> Result<(), SimError> {
        EventWorld::run_with(self, faults, control)
    }
}
