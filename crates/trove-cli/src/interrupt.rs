//! SIGINT and SIGTERM: stop the commands this process started (their whole process
//! groups), let the build fail without storing anything, and exit with 128 + the signal.
//! A process that does not finish within the grace is ended anyway: no lock outlives it
//! (the kernel releases `flock`s), and the store removes a dead writer's temp files.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signal that interrupted this process, 0 while none has.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The exit code for an interrupted run: 128 + the signal (130 for SIGINT).
pub(crate) fn exit_code() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => u8::try_from(128 + s).ok(),
    }
}

/// Starts the thread that handles SIGINT and SIGTERM.
pub(crate) fn install() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            SIGNAL.store(signal, Ordering::SeqCst);
            trove::interrupt();
            // The main thread normally returns once its command is gone; if it is
            // blocked elsewhere (waiting for another process's build), end it here.
            std::thread::sleep(trove::INTERRUPT_GRACE + Duration::from_secs(2));
            std::process::exit(128 + signal);
        }
    });
}
