//! A Jepsen-style safety checker for Redlock on real nodes.
//!
//! `K` contenders (tasks) contend for one resource on the given nodes (any
//! adapter: `Vec<Arc<dyn Node>>`). While holding it through
//! [`Redlock::scoped`](redlock_core::Redlock::scoped), each does a deliberately non-atomic
//! read-modify-write on a shared in-memory [`Register`]: read, wait
//! [`Config::hold`], check the lease, write the value plus one. Every hold
//! records `[obtained, end]` and its write on one monotonic clock. A fault
//! runs next to the contenders (pause, kill, proxy faults, early expiry; see
//! the functions of this module), and the [`Report`] says what happened:
//!
//! - **overlaps**: holds whose `[obtained, end]` intervals intersect, where
//!   `obtained` is when the lock call returned and `end` the earlier of the
//!   end of the work and the validity at that time. Redlock promises none.
//! - **lost updates**: writes the register accepted although another holder
//!   had written since this holder's read.
//! - **stale writes** (and how many the register *accepted*): writes by a
//!   holder after another holder touched the register since its read. With
//!   [`Config::fenced`], the register checks fencing tokens
//!   ([`Lease::fence`](redlock_core::Lease::fence)) on every read and write and rejects them all.
//! - **lost-lock detections**: holders whose lease said "lost" before they
//!   wrote (so they did not write), or whose work was cancelled by the loss.
//! - acquisitions per second, keys left on the nodes after the run, and —
//!   when [`Config::count_holders`] is on — how often the holder had exactly
//!   a quorum of nodes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use redlock_core::Node;
//! use redlock_testkit::checker::{self, Config};
//!
//! # async fn run(nodes: Vec<Arc<dyn Node>>) -> Result<(), Box<dyn std::error::Error>> {
//! let report = checker::run(nodes, Config::new("no-fault").acquisitions(500), |_stop| async {}).await?;
//! assert_eq!(report.violations(), 0);
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

use redlock_core::InvalidArgument;

mod config;
mod failover;
mod faults;
pub mod processes;
mod register;
mod report;
mod run;
mod scenarios;

pub use config::*;
pub use failover::*;
pub use faults::*;
pub use register::*;
pub use report::*;
pub use run::*;
pub use scenarios::*;

pub(crate) use faults::blocking;
pub(crate) use run::{error_kind, keys_left, options, run_with};

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The configuration or the node list was rejected by the core.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] InvalidArgument),
    /// A client pause needs a multi-threaded tokio runtime.
    #[error("client pauses need a multi-threaded tokio runtime")]
    NeedsMultiThread,
    /// Servers, proxies or nodes for a scenario could not be set up.
    #[error("setup failed: {0}")]
    Setup(String),
    /// No scenario has this name.
    #[error("unknown scenario {0:?}; known: {SCENARIOS:?}")]
    UnknownScenario(String),
    /// The checker's own tasks failed.
    #[error("checker task failed: {0}")]
    Task(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use redlock_core::Node;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sim_nodes_no_fault_have_no_violations() {
        let nodes: Vec<Arc<dyn Node>> = (0..5)
            .map(|i| Arc::new(crate::sim::SimNode::new(format!("sim-{i}"))) as Arc<dyn Node>)
            .collect();
        let report = run(
            nodes,
            Config::new("sim")
                .acquisitions(200)
                .max_duration(Duration::from_secs(5)),
            |_stop| async {},
        )
        .await
        .expect("run");
        println!("{report}");
        assert!(report.acquisitions >= 200, "{report}");
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!(report.stale_writes_accepted, 0, "{report}");
        assert_eq!(report.keys_left, 0, "{report}");
    }
}
