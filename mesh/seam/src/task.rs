//! Spawning tasks, the same way in both worlds, with a teardown order that
//! replays.
//!
//! Why this exists: when turmoil crashes a host it drops the host's tokio
//! runtime, and the runtime drops `tokio::spawn`ed tasks in the order of
//! their *process-wide* task ids (a sharded list keyed by `id % 4`). Those
//! drops send FINs and RSTs in that order, so two runs of one seed in one
//! process (a determinism re-run, `explore --jobs`) could diverge after a
//! crash. Tasks spawned onto the host's `LocalSet` are dropped in spawn
//! order instead, which the seed fixes. So inside a simulation every spawn
//! goes to the local set; on real sockets it goes to the ordinary runtime.
//!
//! The choice is made at run time by the simulation (see [`LocalSpawning`]),
//! never by a cfg switch. `clippy.toml` bans the direct tokio spawns.

use std::cell::Cell;
use std::future::Future;

use tokio::task::{JoinHandle, JoinSet};

thread_local! {
    /// How many simulations are being stepped on this thread right now.
    static SIMULATING: Cell<usize> = const { Cell::new(0) };
}

/// While alive, spawns on this thread go to the current `LocalSet`.
///
/// A simulation holds one while it steps its hosts: turmoil runs every
/// host's software inside a `LocalSet` on the stepping thread.
#[must_use = "spawns go to the local set only while the guard lives"]
pub struct LocalSpawning(());

impl LocalSpawning {
    /// Routes this thread's spawns to the local set until dropped.
    pub fn enter() -> Self {
        SIMULATING.with(|count| count.set(count.get() + 1));
        LocalSpawning(())
    }
}

impl Drop for LocalSpawning {
    fn drop(&mut self) {
        SIMULATING.with(|count| count.set(count.get() - 1));
    }
}

fn simulating() -> bool {
    SIMULATING.with(Cell::get) > 0
}

/// Spawns `future` as a new task of the current host.
#[allow(clippy::disallowed_methods)] // the one place that picks the spawner.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if simulating() {
        tokio::task::spawn_local(future)
    } else {
        tokio::spawn(future)
    }
}

/// Spawns `future` into `set`, on the same spawner as [`spawn`].
#[allow(clippy::disallowed_methods)] // the one place that picks the spawner.
pub fn spawn_into<T, F>(set: &mut JoinSet<T>, future: F)
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    if simulating() {
        set.spawn_local(future);
    } else {
        set.spawn(future);
    }
}

/// hyper's executor (HTTP/2 connection tasks) on the same spawner.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        spawn(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outside_a_simulation_spawns_on_the_runtime() {
        // No LocalSet here: spawn_local would panic.
        assert_eq!(spawn(async { 7 }).await.unwrap(), 7);
    }

    #[test]
    fn inside_a_simulation_spawns_on_the_local_set_in_spawn_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let _guard = LocalSpawning::enter();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        local.block_on(&runtime, async {
            for i in 0..8 {
                let order = order.clone();
                // Each task records its drop: the teardown order.
                let record = DropRecorder(i, order);
                spawn(async move {
                    let _record = record;
                    std::future::pending::<()>().await;
                });
            }
            tokio::task::yield_now().await;
        });
        drop(local);
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    struct DropRecorder(usize, std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

    impl Drop for DropRecorder {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
}
