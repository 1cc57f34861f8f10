//! What the rounds know about each node's responsiveness.

use std::sync::atomic::{AtomicBool, Ordering};

/// What the rounds know about one node's responsiveness.
///
/// A node whose request timed out becomes *unresponsive*: later rounds still
/// send it every request (so its order is kept and it is used again as soon
/// as it answers), but they no longer wait for it to decide that a quorum is
/// out of reach. Without this, every failed attempt while a minority is
/// stopped (paused process, black-holed link) would wait out the per-node
/// timeout on that minority, holding the partial keys it took and blocking
/// every other contender meanwhile. A success still needs a quorum of real
/// answers, so this changes how fast a failure is decided, never what counts
/// as a success.
///
/// The node becomes responsive again on its first answer to any request, or
/// when a background probe (a read-only `inspect` sent behind the requests
/// it has not answered yet) returns.
#[derive(Debug, Default)]
pub(crate) struct Health {
    unresponsive: AtomicBool,
    probing: AtomicBool,
}

impl Health {
    /// Whether rounds stop waiting for this node.
    pub(crate) fn is_unresponsive(&self) -> bool {
        self.unresponsive.load(Ordering::Acquire)
    }

    /// The node answered a request: wait for it again.
    pub(crate) fn answered(&self) {
        if self.unresponsive.load(Ordering::Relaxed) {
            self.unresponsive.store(false, Ordering::Release);
        }
    }

    /// Marks the node unresponsive.
    pub(crate) fn suspect(&self) {
        self.unresponsive.store(true, Ordering::Release);
    }

    /// Claims the probe: `false` when one is running already.
    pub(crate) fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// The probe ended; `answered` when the node replied to it.
    pub(crate) fn end_probe(&self, answered: bool) {
        if answered {
            self.unresponsive.store(false, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }
}
