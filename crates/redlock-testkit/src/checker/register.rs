//! The register the holders update: [`Register`].

use std::sync::{Mutex, PoisonError};

/// A register in memory that the holders update without atomicity, and that
/// can check fencing tokens like a storage layer would.
#[derive(Debug, Default)]
pub struct Register {
    state: Mutex<RegisterState>,
}

#[derive(Debug, Default)]
pub(crate) struct RegisterState {
    pub(crate) value: u64,
    /// The hold that last touched the register successfully.
    pub(crate) last_hold: Option<u64>,
    /// The highest fencing token accepted, and the hold it came with.
    pub(crate) highest: Option<(u64, u64)>,
    pub(crate) writes: u64,
    pub(crate) lost_updates: u64,
    pub(crate) stale_writes: u64,
    pub(crate) stale_accepted: u64,
    pub(crate) rejections: u64,
}

/// A read or write the fenced register refused: its token is below the
/// highest one seen (or equal to it from another holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl RegisterState {
    fn admit(&mut self, hold: u64, fence: Option<u64>) -> Result<(), Rejected> {
        let Some(token) = fence else {
            return Ok(());
        };
        match self.highest {
            Some((t, h)) if token < t || (token == t && h != hold) => {
                self.rejections += 1;
                Err(Rejected)
            }
            _ => {
                self.highest = Some((token, hold));
                Ok(())
            }
        }
    }
}

impl Register {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, RegisterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the value as hold `hold` (with its fencing token, if any).
    pub fn read(&self, hold: u64, fence: Option<u64>) -> Result<u64, Rejected> {
        let mut s = self.lock();
        s.admit(hold, fence)?;
        s.last_hold = Some(hold);
        Ok(s.value)
    }

    /// Writes `value` as hold `hold`, which read `read` before.
    pub fn write(
        &self,
        hold: u64,
        fence: Option<u64>,
        read: u64,
        value: u64,
    ) -> Result<(), Rejected> {
        let mut s = self.lock();
        let stale = s.last_hold != Some(hold);
        if stale {
            s.stale_writes += 1;
        }
        s.admit(hold, fence)?;
        if stale {
            s.stale_accepted += 1;
        }
        if s.value != read {
            s.lost_updates += 1;
        }
        s.value = value;
        s.writes += 1;
        s.last_hold = Some(hold);
        Ok(())
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.lock().value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_register_accepts_stale_writes_and_loses_updates() {
        let reg = Register::default();
        let a = reg.read(1, None).expect("read");
        let b = reg.read(2, None).expect("read");
        reg.write(1, None, a, a + 1).expect("accepted");
        reg.write(2, None, b, b + 1).expect("accepted");
        let s = reg.lock();
        assert_eq!(s.value, 1);
        assert_eq!(s.lost_updates, 1);
        assert_eq!(s.stale_writes, 2);
        assert_eq!(s.stale_accepted, 2);
    }

    #[test]
    fn fenced_register_rejects_every_stale_write() {
        let reg = Register::default();
        let a = reg.read(1, Some(7)).expect("read");
        let b = reg.read(2, Some(8)).expect("read");
        assert_eq!(reg.write(1, Some(7), a, a + 1), Err(Rejected));
        reg.write(2, Some(8), b, b + 1).expect("accepted");
        // Same token from another holder, and an older token: rejected.
        assert_eq!(reg.read(3, Some(8)), Err(Rejected));
        assert_eq!(reg.read(4, Some(2)), Err(Rejected));
        let s = reg.lock();
        assert_eq!(s.value, 1);
        assert_eq!(s.lost_updates, 0);
        assert_eq!(s.stale_writes, 1);
        assert_eq!(s.stale_accepted, 0);
        assert_eq!(s.rejections, 3);
    }
}
