//! The outcome of a run: [`Report`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The run's name.
    pub name: String,
    /// Contenders.
    pub contenders: usize,
    /// Holds: lock calls that returned a lock.
    pub acquisitions: u64,
    /// Wall time of the contention phase.
    pub elapsed: Duration,
    /// Holds whose intervals intersect another hold's.
    pub overlaps: u64,
    /// Writes the register accepted that overwrote another holder's write.
    pub lost_updates: u64,
    /// Writes attempted after another holder touched the register since the
    /// writer's read.
    pub stale_writes: u64,
    /// Stale writes the register accepted (zero with fencing).
    pub stale_writes_accepted: u64,
    /// Reads and writes the fenced register rejected.
    pub fence_rejections: u64,
    /// Holds whose fencing token was not above every earlier hold's.
    pub fence_regressions: u64,
    /// Writes the register accepted.
    pub writes: u64,
    /// The register's final value.
    pub register: u64,
    /// Holders that learnt of the loss before writing (skipped the write or
    /// were cancelled).
    pub lost_lock_detections: u64,
    /// Client pauses injected.
    pub client_pauses: u64,
    /// Lock calls that failed, by error kind.
    pub lock_errors: BTreeMap<String, u64>,
    /// Lock keys found on the nodes after the run.
    pub keys_left: u64,
    /// Nodes that could not be read after the run.
    pub nodes_unreadable: u64,
    /// Holds checked for how many nodes held the token (with
    /// [`Config::count_holders`](super::Config::count_holders)).
    pub holds_counted: u64,
    /// Of those, holds where exactly a quorum of nodes held the token.
    pub exact_quorum_holds: u64,
    /// Of those, how many holds saw the token on how many of the read nodes.
    pub holders_seen: BTreeMap<usize, u64>,
    /// Whether the run stopped at [`Config::max_duration`](super::Config::max_duration).
    pub timed_out: bool,
}

impl Report {
    /// Holds per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.acquisitions as f64 / secs
        } else {
            0.0
        }
    }

    /// Safety violations: overlapping holds plus lost updates.
    pub fn violations(&self) -> u64 {
        self.overlaps + self.lost_updates
    }

    /// Panics (with the report) unless the run finished in time with at
    /// least `acquisitions` holds.
    pub fn assert_complete(&self, acquisitions: u64) {
        assert!(!self.timed_out, "{self}");
        assert!(self.acquisitions >= acquisitions, "{self}");
    }

    /// Panics (with the report) on any overlap, lost update or stale write,
    /// or when the register disagrees with the writes made.
    pub fn assert_safe(&self) {
        assert_eq!(self.overlaps, 0, "{self}");
        assert_eq!(self.lost_updates, 0, "{self}");
        assert_eq!(self.stale_writes, 0, "{self}");
        assert_eq!(self.register, self.writes, "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} acquisitions in {:.2?} ({:.0}/s) by {} contenders; violations {} \
             (overlaps {}, lost updates {}); stale writes {} (accepted {}); fence rejections {}; \
             fence regressions {}; writes {} (register {}); lost-lock detections {} (client pauses {}); \
             keys left {}",
            self.name,
            self.acquisitions,
            self.elapsed,
            self.rate(),
            self.contenders,
            self.violations(),
            self.overlaps,
            self.lost_updates,
            self.stale_writes,
            self.stale_writes_accepted,
            self.fence_rejections,
            self.fence_regressions,
            self.writes,
            self.register,
            self.lost_lock_detections,
            self.client_pauses,
            self.keys_left,
        )?;
        if self.nodes_unreadable > 0 {
            write!(f, " ({} nodes unreadable)", self.nodes_unreadable)?;
        }
        if self.holds_counted > 0 {
            write!(
                f,
                "; exactly a quorum in {} of {} holds (holds by nodes seen holding: {:?})",
                self.exact_quorum_holds, self.holds_counted, self.holders_seen
            )?;
        }
        if !self.lock_errors.is_empty() {
            write!(f, "; lock errors {:?}", self.lock_errors)?;
        }
        if self.timed_out {
            write!(f, "; TIMED OUT")?;
        }
        Ok(())
    }
}
