//! A one-shot broadcast signal: fire once, any number of waiters wake.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct State {
    fired: bool,
    wakers: Vec<Waker>,
}

/// Fires once; every [`Signal::wait`] future then completes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signal {
    state: Arc<Mutex<State>>,
}

impl Signal {
    pub fn fire(&self) {
        let wakers = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            s.fired = true;
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fired
    }

    pub fn wait(&self) -> Wait {
        Wait {
            signal: self.clone(),
        }
    }
}

/// Completes when the signal fires.
#[derive(Debug)]
pub(crate) struct Wait {
    signal: Signal,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self
            .signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if s.fired {
            return Poll::Ready(());
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
