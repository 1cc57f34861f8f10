//! Requests that complete even when their caller stops waiting.
//!
//! The core polls every node's future once, which fixes each request's place
//! in that node's order, and then may drop the slower ones. A request whose
//! future is dropped after that first poll must still be carried out: its
//! reply read (some clients skip a request whose receiver is gone), a
//! `NOSCRIPT` answer followed by the full script, a connection given back.
//! [`FinishOnDrop`] runs a request as a future of its own and, when dropped
//! before it is done, hands the rest to somewhere that finishes it: a task on
//! the current tokio runtime by default, or a driver of the adapter's own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use redlock_core::BoxFuture;

/// Where the rest of a dropped request goes.
type Handoff<T> = Box<dyn FnOnce(BoxFuture<'static, T>) + Send>;

/// A future finished elsewhere if it is dropped before it is done.
///
/// Polled to completion it behaves like the future it wraps. Dropped
/// before, the wrapped future is handed over (see [`new`](Self::new) and
/// [`handing_to`](Self::handing_to)); dropped before its first poll it is
/// handed over too, so wrap a request only once it is committed.
///
/// ```
/// use redlock_kit::FinishOnDrop;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let done = Arc::new(AtomicBool::new(false));
/// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
/// let flag = done.clone();
/// let request = FinishOnDrop::new(async move {
///     let _ = rx.await;
///     flag.store(true, Ordering::SeqCst);
/// });
/// drop(request); // the caller stops waiting...
/// tx.send(()).unwrap();
/// tokio::task::yield_now().await;
/// assert!(done.load(Ordering::SeqCst)); // ...and the request still ran to its end
/// # }
/// ```
#[must_use = "a future does nothing unless polled"]
pub struct FinishOnDrop<T: Send + 'static> {
    run: Option<BoxFuture<'static, T>>,
    handoff: Option<Handoff<T>>,
}

impl<T: Send + 'static> FinishOnDrop<T> {
    /// Finished in a task on the tokio runtime of the thread that drops it
    /// (dropped outside a runtime, the rest is dropped too).
    pub fn new(run: impl Future<Output = T> + Send + 'static) -> Self {
        FinishOnDrop {
            run: Some(Box::pin(run)),
            handoff: None,
        }
    }

    /// Handed to `handoff` when dropped before it is done (for an adapter
    /// whose driver task finishes such requests itself, in order).
    pub fn handing_to(
        run: impl Future<Output = T> + Send + 'static,
        handoff: impl FnOnce(BoxFuture<'static, T>) + Send + 'static,
    ) -> Self {
        FinishOnDrop {
            run: Some(Box::pin(run)),
            handoff: Some(Box::new(handoff)),
        }
    }
}

impl<T: Send + 'static> Future for FinishOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(run) = self.run.as_mut() else {
            // Polled again after it completed: it never completes again.
            return Poll::Pending;
        };
        let out = std::task::ready!(run.as_mut().poll(cx));
        self.run = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for FinishOnDrop<T> {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        match self.handoff.take() {
            Some(handoff) => handoff(run),
            None => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = run.await;
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn completes_like_the_future_it_wraps() {
        assert_eq!(FinishOnDrop::new(async { 7 }).await, 7);
    }

    #[tokio::test]
    async fn a_dropped_request_is_handed_over_unfinished() {
        let handed: Arc<Mutex<Option<BoxFuture<'static, u8>>>> = Arc::default();
        let slot = handed.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut request =
            FinishOnDrop::handing_to(async move { rx.await.unwrap_or(0) }, move |f| {
                *slot.lock().unwrap() = Some(f);
            });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut request).poll(&mut cx).is_pending());
        drop(request);
        let rest = handed.lock().unwrap().take().expect("handed over");
        tx.send(3).unwrap();
        assert_eq!(rest.await, 3);
    }

    #[tokio::test]
    async fn a_completed_request_is_not_handed_over() {
        let handed = Arc::new(Mutex::new(false));
        let flag = handed.clone();
        let request = FinishOnDrop::handing_to(async { 1 }, move |_| *flag.lock().unwrap() = true);
        assert_eq!(request.await, 1);
        assert!(!*handed.lock().unwrap());
    }

    #[tokio::test]
    async fn a_dropped_request_finishes_in_a_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let request = FinishOnDrop::new(async move {
            let _ = rx.await;
            let _ = done_tx.send(());
        });
        drop(request);
        tx.send(()).unwrap();
        done_rx.await.expect("the spawned rest ran");
    }
}
