//! Reads that many callers want at once, done once per round: the answer
//! to a join (a room's member count, and its members in a small room),
//! which with a broker is a round trip. When a room fills, its joins
//! arrive together; each waiting on a read of its own would hold that
//! read's state (its command, its reply) per joiner, and the broker would
//! read the room once per joiner. Instead, per key, at most one read runs,
//! and every caller that came after it started waits for the next one,
//! which starts when the running one ends: a caller's read always starts
//! after its call, and a burst of N joins costs two or three reads.

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

    /// The value of `key` as read after this call: the round that has not
    /// started yet, joined, or a new one (`read` then runs in a task of its
    /// own once the running round ended). `None` when the round's task
    /// ended without a value (the runtime is shutting down): read it
    /// yourself. Not an `async fn`: what waits is the receiver alone.
    pub(crate) fn get<F, R>(self: &Arc<Self>, key: &str, read: R) -> impl Future<Output = Option<V>> + Send
    where
        R: FnOnce() -> F,
        F: Future<Output = V> + Send + 'static,
    {
        let mut rx = {
            let mut keys = self.lock();
            let slot = keys.entry(key.to_owned()).or_insert(Slot { running: None, next: None });
            match slot.next.as_ref().filter(|n| n.has_changed().is_ok()) {
                Some(next) => next.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    slot.next = Some(rx.clone());
                    let previous = slot.running.clone();
                    let round = Round { rounds: self.clone(), key: key.to_owned(), rx: rx.clone() };
                    tokio::spawn(round.run(previous, tx, read()));
                    rx
                }
            }
        };
        async move {
            loop {
                if let Some(v) = rx.borrow_and_update().as_ref() {
                    return Some(v.clone());
                }
                rx.changed().await.ok()?;
            }
        }
    }

    /// Keys with a round running or gathering.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.lock().len()
    }
}

/// One round's task: it ends the round in the map however it ends.
struct Round<V: Clone + Send + Sync + 'static> {
    rounds: Arc<Rounds<V>>,
    key: String,
    rx: Value<V>,
}

impl<V: Clone + Send + Sync + 'static> Round<V> {
    async fn run(self, previous: Option<Value<V>>, tx: watch::Sender<Option<V>>, read: impl Future<Output = V>) {
        if let Some(mut p) = previous {
            // Ended with a value or without (its task is gone): either way
            // it no longer runs.
            let _ = p.wait_for(Option::is_some).await;
        }
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

    /// A caller of `room`, in a task of its own.
    fn spawn_get(rounds: &Arc<Rounds<u64>>, reads: &Arc<AtomicU64>) -> tokio::task::JoinHandle<Option<u64>> {
        let (rounds, reads) = (rounds.clone(), reads.clone());
        tokio::spawn(async move { rounds.get("room", read(&reads)).await })
    }

    #[tokio::test]
    async fn callers_at_once_share_a_read_and_each_read_starts_after_its_callers() {
        let rounds = Arc::new(Rounds::<u64>::default());
        let reads = Arc::new(AtomicU64::new(0));
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
        let rounds = Arc::new(Rounds::<u64>::default());
        let reads = Arc::new(AtomicU64::new(0));
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
}
