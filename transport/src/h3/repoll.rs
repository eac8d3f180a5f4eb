//! Re-polls a future at once when it wakes its own task during its poll.
//!
//! The HTTP/3 connection task serves short requests inline (`h3::poll_once`). When such a
//! request ends, h3 0.0.8 drops its `RequestEnd`, which sends the stream id on an unbounded
//! channel whose receiver the same task polls in `accept` — so the task wakes itself while it
//! runs. tokio then treats the task as yielding (`Harness::poll` → `yield_now`): it goes to the
//! back of the run queue and a parked worker is unparked to steal it. With one call in flight
//! that was 0.77 wake-ups of the other worker per call (docs/performance-notes.md, 2026-12-05),
//! each one handing the next step of a call to a worker that first has to wake up.
//!
//! Not reported upstream (hyperium/h3) as of 2026-12-07; tokio's handling of a self-wake is by
//! design. Remove `Repoll` when a released h3 no longer signals a request's end on a channel that
//! the connection's own `accept` polls (so ending an inline request does not wake its own task).
//!
//! [`Repoll`] polls the inner future under its own waker. A wake-up that arrives while the
//! inner poll runs is only noted, and the inner future is polled again before returning;
//! wake-ups at any other time go straight to the task. A bound on the re-polls (and tokio's
//! cooperative budget) keeps a future that always wakes itself from starving its worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::{ArcWake, AtomicWaker, waker_ref};

/// Polls of the inner future per poll of the task at most; past it the task yields to tokio.
const REPOLLS: usize = 8;

pin_project_lite::pin_project! {
    /// A future run by [`Repoll`]'s rules (module docs).
    pub(crate) struct Repoll<F> {
        #[pin]
        inner: F,
        wakes: Arc<Wakes>,
    }
}

struct Wakes {
    /// True while the inner future is being polled.
    polling: AtomicBool,
    /// Set by every wake-up; read after each inner poll.
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Wakes {
    fn wake_by_ref(wakes: &Arc<Self>) {
        // SeqCst on both sides (here: store `woken`, load `polling`; in `poll`: store `polling`,
        // load `woken`): either this sees the poll over and wakes the task, or the poll sees
        // `woken` and polls again. Never neither.
        wakes.woken.store(true, Ordering::SeqCst);
        if !wakes.polling.load(Ordering::SeqCst) {
            wakes.task.wake();
        }
    }
}

impl<F: Future> Repoll<F> {
    pub(crate) fn new(inner: F) -> Self {
        Repoll {
            inner,
            wakes: Arc::new(Wakes {
                polling: AtomicBool::new(false),
                woken: AtomicBool::new(false),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.wakes.task.register(cx.waker());
        let waker = waker_ref(this.wakes);
        let mut inner_cx = Context::from_waker(&waker);
        for _ in 0..REPOLLS {
            this.wakes.woken.store(false, Ordering::SeqCst);
            this.wakes.polling.store(true, Ordering::SeqCst);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            this.wakes.polling.store(false, Ordering::SeqCst);
            if polled.is_ready() {
                return polled;
            }
            // Out of budget, tokio's resources answer Pending and wake the task: polling again
            // now would only spin. Hand the wake-up to tokio instead.
            if !this.wakes.woken.load(Ordering::SeqCst)
                || !tokio::task::coop::has_budget_remaining()
            {
                break;
            }
        }
        if this.wakes.woken.load(Ordering::SeqCst) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;

    /// Counts the wake-ups of the task that polls it.
    struct CountingWaker(AtomicUsize);

    impl ArcWake for CountingWaker {
        fn wake_by_ref(w: &Arc<Self>) {
            w.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself in each of its first `self_wakes` polls, then finishes.
    struct WakesItself {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_with<F: Future + Unpin>(f: &mut F, task: &Arc<CountingWaker>) -> Poll<F::Output> {
        let waker = waker_ref(task);
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_wake_during_the_poll_is_served_by_polling_again() {
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut f = Repoll::new(WakesItself {
            self_wakes: 3,
            polls: 0,
        });
        // Three self-wakes, then Ready: all within one poll of the task, which is never woken.
        assert_eq!(poll_with(&mut f, &task), Poll::Ready(4));
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_runtime() {
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let mut f = Repoll::new(WakesItself {
            self_wakes: usize::MAX,
            polls: 0,
        });
        assert_eq!(poll_with(&mut f, &task), Poll::Pending);
        assert_eq!(f.inner.polls, REPOLLS);
        // The last self-wake is passed on, so the runtime polls the task again later.
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_after_the_poll_reaches_the_task() {
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let stored: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
        let mut f = Repoll::new(std::future::poll_fn({
            let stored = stored.clone();
            move |cx| {
                *stored
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
                Poll::<()>::Pending
            }
        }));
        assert_eq!(poll_with(&mut f, &task), Poll::Pending);
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        let waker = stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let waker = waker.unwrap_or_else(|| panic!("the inner future stored no waker"));
        std::thread::spawn(move || waker.wake())
            .join()
            .unwrap_or_else(|_| panic!("waking thread panicked"));
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }
}
