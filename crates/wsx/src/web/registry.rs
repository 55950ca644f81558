//! The process-wide connection rules of browsers: one connection per
//! host:port in CONNECTING at a time (RFC 6455 §4.1, client requirement 2),
//! and a cap on live connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The cap's default, as `set_max_connections` documents.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 200;

static MAX: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_CONNECTIONS);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Set the cap on live [`WebSocket`](super::WebSocket)s in this process
/// (default 200). A live connection is one that is not yet closed:
/// connecting (including waiting for its turn at its host), open or
/// closing. A `WebSocket` created while the cap is reached fails: it fires
/// `error`, then `close` with code 1006. Lowering the cap does not close
/// connections that are already live.
///
/// ```
/// wsx::web::set_max_connections(1000);
/// assert_eq!(wsx::web::max_connections(), 1000);
/// # wsx::web::set_max_connections(200);
/// ```
pub fn set_max_connections(n: usize) {
    MAX.store(n, Ordering::SeqCst);
}

/// The cap on live connections; see [`set_max_connections`].
///
/// ```
/// assert!(wsx::web::max_connections() > 0);
/// ```
pub fn max_connections() -> usize {
    MAX.load(Ordering::SeqCst)
}

/// How many connections are live now (connecting, open or closing), in
/// the whole process.
///
/// ```
/// println!("{} live WebSocket connections", wsx::web::live_connections());
/// ```
pub fn live_connections() -> usize {
    LIVE.load(Ordering::SeqCst)
}

/// One place under the cap, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(());

impl Slot {
    /// Take a place under the cap, if one is free.
    pub(crate) fn reserve() -> Option<Slot> {
        LIVE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |live| (live < max_connections()).then_some(live + 1))
            .ok()
            .map(|_| Slot(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// host:port → the one-permit semaphore whose holder is the connection in
/// CONNECTING to it. Tokio's semaphore is fair, so connections get their
/// turn in the order they were created. An entry lives while someone holds
/// or waits for it.
static HOSTS: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn hosts() -> MutexGuard<'static, HashMap<String, Arc<Semaphore>>> {
    // The map stays consistent across a panic (single inserts and removes).
    HOSTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reference to a host's entry that removes the entry when it is the last
/// one, so the map does not grow with every host ever contacted.
struct Entry {
    key: String,
    sem: Option<Arc<Semaphore>>,
}

impl Entry {
    fn new(key: String) -> Self {
        let sem = hosts().entry(key.clone()).or_insert_with(|| Arc::new(Semaphore::new(1))).clone();
        Self { key, sem: Some(sem) }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut map = hosts();
        // Drop our reference under the lock: every other reference is taken
        // under it too, so a count of 1 means only the map is left.
        drop(self.sem.take());
        if map.get(&self.key).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(&self.key);
        }
    }
}

/// The turn of one connection to connect to its host:port; the next one
/// waiting gets it when this is dropped (established or failed).
pub(crate) struct HostTurn {
    permit: Option<OwnedSemaphorePermit>,
    _entry: Entry,
}

impl Drop for HostTurn {
    fn drop(&mut self) {
        // Give the turn away before the entry may be removed.
        drop(self.permit.take());
    }
}

/// Wait until no other connection to `key` (host:port) is connecting.
pub(crate) async fn wait_turn(key: String) -> HostTurn {
    let entry = Entry::new(key);
    let permit = match entry.sem.clone() {
        // The semaphore is never closed, so this only fails in theory; a
        // connection then goes ahead without waiting.
        Some(sem) => sem.acquire_owned().await.ok(),
        None => None,
    };
    HostTurn { permit, _entry: entry }
}

/// Fetch's bad ports (<https://fetch.spec.whatwg.org/#port-blocking>): a
/// request to one of them is a network error.
pub(crate) fn is_bad_port(port: u16) -> bool {
    const BAD: &[u16] = &[
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104,
        109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526,
        530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045,
        4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
    ];
    BAD.binary_search(&port).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_port_list_is_sorted_and_matches_fetch() {
        assert!(is_bad_port(0) && is_bad_port(22) && is_bad_port(6667) && is_bad_port(10080));
        assert!(!is_bad_port(80) && !is_bad_port(443) && !is_bad_port(8080) && !is_bad_port(9001));
    }

    #[tokio::test]
    async fn host_entries_are_removed_when_unused() {
        let key = "registry-test.invalid:1234".to_owned();
        let turn = wait_turn(key.clone()).await;
        assert!(hosts().contains_key(&key));
        drop(turn);
        assert!(!hosts().contains_key(&key));
    }
}
