//! Reads that many callers want at once, done once per round: the answer
//! to a join (a room's member count, and its members in a small room),
//! which with a broker is a round trip. When a room fills, its joins
//! arrive together; each waiting on a read of its own would hold that
//! read's state (its command, its reply) per joiner, and the broker would
//! read the room once per joiner. Instead, per key, at most one read runs
//! (the first caller's, which it does itself), and every caller that came
//! after it started waits for the next one, which starts when the running
//! one ends: a caller's read always starts after its call, and a burst of
//! N joins costs a few reads.

use futures_util::future::Either;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

type Value<V> = watch::Receiver<Option<V>>;

/// The rounds of every key: the one reading, and the one gathering
/// callers to read next.
pub(crate) struct Rounds<V> {
    keys: Mutex<HashMap<String, Slot<V>>>,
}

struct Slot<V> {
    running: Option<Value<V>>,
    next: Option<Value<V>>,
}

impl<V> Default for Rounds<V> {
    fn default() -> Self {
        Self { keys: Mutex::new(HashMap::new()) }
    }
}

impl<V: Clone + Send + Sync + 'static> Rounds<V> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot<V>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` as read after this call. With no round of the
    /// key running, the caller reads it itself, at once (a read that does
    /// not wait answers in the caller's poll, as if there were no rounds);
    /// else it joins the round that has not started yet, or starts one,
    /// whose read runs in a task of its own once the running round ended.
    /// `None` when the round ended without a value (its reader gave up, or
    /// the runtime is shutting down): read it yourself.
    ///
    /// Not an `async fn`: what a caller holds while it waits is the wait
    /// alone (a read of its own is boxed).
    pub(crate) fn get<F, R>(self: &Arc<Self>, key: &str, read: R) -> impl Future<Output = Option<V>> + Send
    where
        R: FnOnce() -> F,
        F: Future<Output = V> + Send + 'static,
    {
        let mut keys = self.lock();
        // Most callers of a burst find their key: no allocation for them.
        if !keys.contains_key(key) {
            keys.insert(key.to_owned(), Slot { running: None, next: None });
        }
        let slot = keys.get_mut(key).expect("inserted above");
        let next = slot.next.as_ref().filter(|n| n.has_changed().is_ok());
        if let Some(next) = next {
            Either::Right(wait(next.clone()))
        } else {
            let (tx, rx) = watch::channel(None);
            let round = Round { rounds: self.clone(), key: key.to_owned(), rx: rx.clone() };
            match slot.running.clone() {
                None => {
                    slot.running = Some(rx);
                    let read = read();
                    // Boxed: one caller per round reads, the others
                    // hold the wait alone.
                    Either::Left(Box::pin(async move {
                        let v = read.await;
                        tx.send_replace(Some(v.clone()));
                        drop(round);
                        Some(v)
                    }))
                }
                Some(previous) => {
                    slot.next = Some(rx.clone());
                    tokio::spawn(round.run(previous, tx, read()));
                    Either::Right(wait(rx))
                }
            }
        }
    }

    /// Keys with a round running or gathering.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.lock().len()
    }
}

/// A round's value, once it has one.
async fn wait<V: Clone>(mut rx: Value<V>) -> Option<V> {
    loop {
        if let Some(v) = rx.borrow_and_update().as_ref() {
            return Some(v.clone());
        }
        rx.changed().await.ok()?;
    }
}

/// One round: it ends the round in the map however it ends (read, given
/// up, or its task gone).
struct Round<V: Clone + Send + Sync + 'static> {
    rounds: Arc<Rounds<V>>,
    key: String,
    rx: Value<V>,
}

impl<V: Clone + Send + Sync + 'static> Round<V> {
    async fn run(self, mut previous: Value<V>, tx: watch::Sender<Option<V>>, read: impl Future<Output = V>) {
        // Ended with a value or without (its reader gave up): either way it
        // no longer runs.
        let _ = previous.wait_for(Option::is_some).await;
        {
            let mut keys = self.rounds.lock();
            if let Some(slot) = keys.get_mut(&self.key) {
                if slot.next.as_ref().is_some_and(|n| n.same_channel(&self.rx)) {
                    slot.next = None;
                }
                slot.running = Some(self.rx.clone());
            }
        }
        tx.send_replace(Some(read.await));
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Round<V> {
    fn drop(&mut self) {
        let mut keys = self.rounds.lock();
        let Some(slot) = keys.get_mut(&self.key) else { return };
        for s in [&mut slot.running, &mut slot.next] {
            if s.as_ref().is_some_and(|r| r.same_channel(&self.rx)) {
                *s = None;
            }
        }
        if slot.running.is_none() && slot.next.is_none() {
            keys.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rounds;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A read that takes 50 ms and returns how many reads started before
    /// it ended, counting itself.
    fn read(
        reads: &Arc<AtomicU64>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> {
        let reads = reads.clone();
        move || {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                n
            })
        }
    }

    /// Rounds of no key yet, and a count of reads.
    fn fresh() -> (Arc<Rounds<u64>>, Arc<AtomicU64>) {
        (Arc::new(Rounds::default()), Arc::new(AtomicU64::new(0)))
    }

    /// A caller of `room`, in a task of its own.
    fn spawn_get(rounds: &Arc<Rounds<u64>>, reads: &Arc<AtomicU64>) -> tokio::task::JoinHandle<Option<u64>> {
        let (rounds, reads) = (rounds.clone(), reads.clone());
        tokio::spawn(async move { rounds.get("room", read(&reads)).await })
    }

    #[tokio::test]
    async fn callers_at_once_share_a_read_and_each_read_starts_after_its_callers() {
        let (rounds, reads) = fresh();
        // The first caller starts a round; the 99 after it, while it runs,
        // all wait for the second.
        let first = spawn_get(&rounds, &reads);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let rest: Vec<_> = (0..99).map(|_| spawn_get(&rounds, &reads)).collect();
        assert_eq!(first.await.unwrap(), Some(1));
        for r in rest {
            assert_eq!(r.await.unwrap(), Some(2), "read after the call, by the second round");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // Ended rounds leave nothing behind.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rounds.busy(), 0);
        // Other keys have rounds of their own.
        let (a, b) = tokio::join!(rounds.get("a", read(&reads)), rounds.get("b", read(&reads)));
        assert_eq!((a.is_some(), b.is_some(), reads.load(Ordering::SeqCst)), (true, true, 4));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_stop_its_round() {
        let (rounds, reads) = fresh();
        let first = spawn_get(&rounds, &reads);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The second caller starts the next round and gives up on it; the
        // third, in the same round, still gets its value.
        let gave_up = tokio::time::timeout(Duration::from_millis(5), rounds.get("room", read(&reads))).await;
        assert!(gave_up.is_err());
        assert_eq!(rounds.get("room", read(&reads)).await, Some(2));
        assert_eq!(first.await.unwrap(), Some(1));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    /// A read that does not wait answers in the caller's own poll, as if
    /// there were no rounds (a join's ack then goes out before anything
    /// else is sent to the joiner).
    #[tokio::test]
    async fn a_read_that_does_not_wait_answers_at_once() {
        use futures_util::FutureExt;
        let rounds = Arc::new(Rounds::<u64>::default());
        assert_eq!(rounds.get("room", || async { 7 }).now_or_never(), Some(Some(7)));
        assert_eq!(rounds.busy(), 0);
    }

    /// The first caller reads itself; if it gives up, the round gathered
    /// behind it still reads.
    #[tokio::test]
    async fn a_reader_that_gives_up_does_not_stop_the_next_round() {
        let (rounds, reads) = fresh();
        let first = spawn_get(&rounds, &reads);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = spawn_get(&rounds, &reads);
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        assert_eq!(second.await.unwrap(), Some(2));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rounds.busy(), 0);
    }
}
