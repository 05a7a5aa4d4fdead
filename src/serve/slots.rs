//! The connection slots and who gives one up when a new connection needs it.
//!
//! Every open connection holds one of `--max-connections` slots. A connection is either
//! **waiting for its client** — for the TLS handshake, the first bytes, the rest of a request
//! head or body, or the next request on a keep-alive connection — or **being answered** (from
//! a complete request until its response has been handed to the socket). When a connection
//! arrives and every slot is taken, the connection that has been waiting longest gives up its
//! slot ("shed": closed without an answer, which HTTP allows for a connection with no request in
//! progress). "Waiting since" counts from the connection's start or the end of its previous
//! response, the same clock as the header timeout; bytes trickled into a head do not reset it,
//! so a one-byte-a-second client ages like a silent one. Connections being answered are never
//! shed: when every slot is answering, the new connection waits for a slot to free.
//!
//! Why shedding and not the alternatives (docs/security.md):
//! - queueing new connections behind idle ones (what `serve` did) lets one client that holds
//!   the cap and reopens what closes keep everybody else in the listen backlog for good;
//! - a short deadline for the first bytes does not stop a client that sends one byte a second,
//!   and still leaves a newcomer behind every idle connection in the backlog;
//! - a per-source cap does not fit the usual deployment, where every peer arrives through the
//!   Ingress controller's few addresses, and an attacker with many addresses walks past it.
//!
//! Shedding the longest waiter means a newly accepted connection is the youngest waiter, so it
//! is shed only after every connection that was waiting before it — and it is read long before
//! that (a shed needs one round of the scheduler, the newcomer's task is already queued).

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The registry of open connections, shared by the accept loop and every connection.
pub(super) struct Slots {
    inner: Mutex<Inner>,
    /// Notified (one stored permit) when a connection starts waiting for its client, so an
    /// accept loop with nobody to shed can look again.
    waiter_appeared: Notify,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    /// The connections waiting for their client, oldest first.
    waiting: BTreeSet<(Instant, u64)>,
}

struct Entry {
    /// Start of the current wait: the connection's start or the end of its previous response.
    since: Instant,
    /// Requests being answered (hyper answers one at a time; a counter stays right anyway).
    answering: u32,
    /// Told to close; never enters `waiting` again.
    shed: bool,
    notify: Arc<Notify>,
}

impl Inner {
    fn set_waiting(&mut self, id: u64) {
        if let Some(e) = self.conns.get(&id) {
            if e.answering == 0 && !e.shed {
                self.waiting.insert((e.since, id));
            }
        }
    }
}

impl Slots {
    pub(super) fn new() -> Arc<Slots> {
        Arc::new(Slots {
            inner: Mutex::new(Inner::default()),
            waiter_appeared: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection accepted `now`; it waits for its client until it has a request.
    pub(super) fn open(self: &Arc<Self>, now: Instant) -> Slot {
        let notify = Arc::new(Notify::new());
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        inner.conns.insert(
            id,
            Entry {
                since: now,
                answering: 0,
                shed: false,
                notify: notify.clone(),
            },
        );
        inner.set_waiting(id);
        drop(inner);
        self.waiter_appeared.notify_one();
        Slot {
            slots: self.clone(),
            id,
            notify,
        }
    }

    /// Tells the connection that has waited longest for its client to close; false when
    /// every open connection is being answered.
    pub(super) fn shed_longest_waiting(&self) -> bool {
        let mut inner = self.lock();
        let Some((_, id)) = inner.waiting.pop_first() else {
            return false;
        };
        if let Some(e) = inner.conns.get_mut(&id) {
            e.shed = true;
            e.notify.notify_one();
        }
        true
    }

    /// Completes once a connection has started waiting for its client since the last call
    /// (at once if one did meanwhile).
    pub(super) async fn waiter_appeared(&self) {
        self.waiter_appeared.notified().await;
    }

    #[cfg(test)]
    fn waiting(&self) -> Vec<u64> {
        self.lock().waiting.iter().map(|(_, id)| *id).collect()
    }
}

/// One connection's slot; dropping it (when the connection ends) removes the registration.
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    notify: Arc<Notify>,
}

impl Slot {
    /// Completes when the accept loop has chosen this connection to make room.
    pub(super) async fn shed(&self) {
        self.notify.notified().await;
    }

    /// Marks a request as being answered until the returned guard is dropped; the guard then
    /// starts a new wait (for the next request on this connection).
    pub(super) fn answering(&self) -> Answering {
        let mut inner = self.slots.lock();
        if let Some(e) = inner.conns.get_mut(&self.id) {
            e.answering += 1;
            let key = (e.since, self.id);
            inner.waiting.remove(&key);
        }
        Answering {
            slots: self.slots.clone(),
            id: self.id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        if let Some(e) = inner.conns.remove(&self.id) {
            inner.waiting.remove(&(e.since, self.id));
        }
    }
}

/// A request being answered (see [`Slot::answering`]).
pub(super) struct Answering {
    slots: Arc<Slots>,
    id: u64,
}

impl Answering {
    /// While the returned guard lives, the connection waits for its client again (reading a
    /// request body): it may be shed, counted from the start of the request's wait.
    pub(super) fn waiting_for_client(&self) -> ClientWait<'_> {
        let mut inner = self.slots.lock();
        if let Some(e) = inner.conns.get_mut(&self.id) {
            e.answering = e.answering.saturating_sub(1);
        }
        inner.set_waiting(self.id);
        drop(inner);
        self.slots.waiter_appeared.notify_one();
        ClientWait { answering: self }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        if let Some(e) = inner.conns.get_mut(&self.id) {
            let old = (e.since, self.id);
            e.answering = e.answering.saturating_sub(1);
            if e.answering == 0 {
                e.since = Instant::now();
                inner.waiting.remove(&old);
            }
        }
        inner.set_waiting(self.id);
        drop(inner);
        self.slots.waiter_appeared.notify_one();
    }
}

/// See [`Answering::waiting_for_client`].
pub(super) struct ClientWait<'a> {
    answering: &'a Answering,
}

impl Drop for ClientWait<'_> {
    fn drop(&mut self) {
        let slots = &self.answering.slots;
        let mut inner = slots.lock();
        if let Some(e) = inner.conns.get_mut(&self.answering.id) {
            e.answering += 1;
            let key = (e.since, self.answering.id);
            inner.waiting.remove(&key);
        }
    }
}

/// A response body that keeps its request [`Answering`] until hyper has taken all of it (hyper
/// drops a body once its last frame is written into the connection's buffer).
pub(super) struct AnsweredBody<B> {
    body: B,
    _answering: Answering,
}

impl<B> AnsweredBody<B> {
    pub(super) fn new(body: B, answering: Answering) -> Self {
        AnsweredBody {
            body,
            _answering: answering,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for AnsweredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn the_longest_waiting_connection_is_shed_first() {
        rt().block_on(async {
            let slots = Slots::new();
            let t0 = Instant::now();
            let a = slots.open(t0);
            let b = slots.open(t0 + Duration::from_millis(1));
            let c = slots.open(t0 + Duration::from_millis(2));
            assert_eq!(slots.waiting(), [a.id, b.id, c.id]);
            assert!(slots.shed_longest_waiting());
            // `a` is told (the notification is stored until it listens) and never chosen again.
            tokio::time::timeout(Duration::from_secs(1), a.shed())
                .await
                .expect("a is shed");
            assert_eq!(slots.waiting(), [b.id, c.id]);
            drop(a.answering());
            assert_eq!(slots.waiting(), [b.id, c.id]);
            drop(a);
            assert!(slots.shed_longest_waiting());
            tokio::time::timeout(Duration::from_secs(1), b.shed())
                .await
                .expect("b is shed");
            assert!(slots.shed_longest_waiting());
            assert!(!slots.shed_longest_waiting(), "nobody left to shed");
            drop((b, c));
            assert!(slots.lock().conns.is_empty());
        });
    }

    #[test]
    fn connections_being_answered_are_not_shed() {
        rt().block_on(async {
            let slots = Slots::new();
            let t0 = Instant::now();
            let a = slots.open(t0);
            let b = slots.open(t0 + Duration::from_millis(1));
            let answering = a.answering();
            assert_eq!(slots.waiting(), [b.id]);
            {
                // Reading a request body: waiting for the client again, with the request's
                // original start, so ahead of `b`.
                let _body = answering.waiting_for_client();
                assert_eq!(slots.waiting(), [a.id, b.id]);
            }
            assert_eq!(slots.waiting(), [b.id]);
            let b_answering = b.answering();
            assert!(!slots.shed_longest_waiting(), "both are being answered");
            // The answer handed over: `a` waits for its next request, from now, behind a
            // newcomer that arrived before.
            let c = slots.open(Instant::now());
            drop(answering);
            assert_eq!(slots.waiting(), [c.id, a.id]);
            drop(b_answering);
            assert_eq!(slots.waiting(), [c.id, a.id, b.id]);
            // The accept loop, told that someone waits again.
            tokio::time::timeout(Duration::from_secs(1), slots.waiter_appeared())
                .await
                .expect("notified");
        });
    }

    #[test]
    fn a_shed_connection_never_waits_again() {
        rt().block_on(async {
            let slots = Slots::new();
            let a = slots.open(Instant::now());
            let answering = a.answering();
            let wait = answering.waiting_for_client();
            assert!(slots.shed_longest_waiting());
            drop(wait);
            drop(answering);
            assert!(slots.waiting().is_empty());
            assert!(!slots.shed_longest_waiting());
        });
    }
}
