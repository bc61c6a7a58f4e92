//! SIGINT and SIGTERM as a flag, for commands that stop starting new work
//! and write what they finished (exit 4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit code of a run stopped by SIGINT or SIGTERM after writing what
/// it had finished (README, "Exit codes").
pub(crate) const EXIT_INTERRUPTED: u8 = 4;

/// A flag raised by the first SIGINT or SIGTERM. A second signal ends the
/// process at once (exit 130), for a user who will not wait for the files.
pub(crate) fn on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let raised = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered before returning, so a signal right after is not missed.
    let (mut interrupt, mut terminate) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let flag = raised.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut signals = 0;
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    signals += 1;
                    if signals > 1 {
                        std::process::exit(130);
                    }
                    eprintln!(
                        "interrupted: no new seeds start; writing the results that finished (again to quit now)"
                    );
                    flag.store(true, Ordering::SeqCst);
                }
            });
        })?;
    Ok(raised)
}
