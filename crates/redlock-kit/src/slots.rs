//! A multi-key call on Redis Cluster, split by hash slot.
//!
//! A script may only touch keys of one slot; a lock of several resources
//! may span several. [`acquire`], [`release`], [`extend`], [`inspect`] and
//! [`fence`] group the keys with [`group_by_slot`], send one request per
//! slot through a [`SlotSender`] (all at once) and combine the answers, so
//! that a `CROSSSLOT` error never reaches the user:
//!
//! - **acquire** is all or nothing: when one slot conflicts or fails, every
//!   other slot that may have taken its keys is released before answering.
//! - **extend** first reads every slot (nothing is changed when one key no
//!   longer holds the token), then extends each.
//! - **release** deletes what holds the token on every slot; **inspect**
//!   answers in the order of the keys; **fence** gives the largest counter.
//!
//! Keys of one slot (every call on a single server) go out as one request,
//! unchanged.
//!
//! ## Redirections
//!
//! A cluster answers `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN` to a command
//! it did not run. Sending it again to the new owner is no hidden retry of
//! something that ran, but for an acquire it may still land after the
//! release that was meant to follow it, if the caller stopped waiting and
//! released meanwhile: a stale key. The same holds for an acquire refused
//! with `NOSCRIPT` and sent again in full. [`Resends`] decides: a release, an
//! extend (it only touches a key that still holds the token) and a read are
//! always sent again; an acquire only when no release went out on the node
//! since it was first sent. Otherwise the acquire fails, unsent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::join_all;
use redlock_core::slot::{group_by_slot, hash_slot};
use redlock_core::{Acquire, Extend, KeyState, NodeError};

/// Sends one request whose keys all share a hash slot. What each method
/// answers is what [`redlock_core::Node`]'s method of the same name answers,
/// for those keys.
#[async_trait::async_trait]
pub trait SlotSender: Sync {
    /// Whether keys are split by slot: `true` on Redis Cluster. Otherwise
    /// every call is one request, on the slot of its first key (which may
    /// still pick a client of a pool).
    fn clustered(&self) -> bool {
        true
    }

    /// The acquire script (or `SET NX PX`) on the keys of one slot.
    async fn acquire(
        &self,
        slot: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Acquire, NodeError>;
    /// The release script on the keys of one slot.
    async fn release(&self, slot: u16, keys: Vec<String>, token: &str) -> Result<u64, NodeError>;
    /// The extend script on the keys of one slot.
    async fn extend(
        &self,
        slot: u16,
        keys: Vec<String>,
        token: &str,
        ttl_ms: u64,
    ) -> Result<Extend, NodeError>;
    /// The inspect script on the keys of one slot.
    async fn inspect(&self, slot: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError>;
    /// The fence script on the keys of one slot.
    async fn fence(&self, slot: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError>;
}

/// The keys of one call by slot: one group when the sender does not split.
fn groups<S: SlotSender + ?Sized>(sender: &S, keys: &[String]) -> Vec<(u16, Vec<String>)> {
    if sender.clustered() && keys.len() > 1 {
        group_by_slot(keys)
    } else {
        let slot = keys.first().map_or(0, |k| hash_slot(k.as_bytes()));
        vec![(slot, keys.to_vec())]
    }
}

/// All or nothing: when any slot conflicts or fails, what the others may
/// have taken is released before the answer. A conflict wins over an error.
pub async fn acquire<S: SlotSender + ?Sized>(
    sender: &S,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
) -> Result<Acquire, NodeError> {
    let mut groups = groups(sender, keys);
    if groups.len() <= 1 {
        let (slot, keys) = groups.pop().unwrap_or((0, Vec::new()));
        return sender.acquire(slot, keys, token, ttl_ms).await;
    }
    let answers = join_all(
        groups
            .iter()
            .map(|(slot, keys)| sender.acquire(*slot, keys.clone(), token, ttl_ms)),
    )
    .await;
    if answers.iter().all(|a| matches!(a, Ok(Acquire::Acquired))) {
        return Ok(Acquire::Acquired);
    }
    // Compensate: every slot that took its keys, or may have (an error
    // after sending), gives them back; only keys holding `token` go.
    let undo = groups
        .into_iter()
        .zip(&answers)
        .filter(|(_, a)| match a {
            Ok(Acquire::Held) => false,
            Err(e) => e.was_sent(),
            _ => true,
        })
        .map(|((slot, keys), _)| sender.release(slot, keys, token));
    for r in join_all(undo).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not release the slots taken by a partial cluster acquire; they expire with their ttl");
        }
    }
    if answers.iter().any(|a| matches!(a, Ok(Acquire::Held))) {
        return Ok(Acquire::Held);
    }
    match answers.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(Acquire::Held),
    }
}

/// Releases on every slot; the number of keys deleted in all, or the first
/// error (after every slot was tried).
pub async fn release<S: SlotSender + ?Sized>(
    sender: &S,
    keys: &[String],
    token: &str,
) -> Result<u64, NodeError> {
    let mut groups = groups(sender, keys);
    if groups.len() <= 1 {
        let (slot, keys) = groups.pop().unwrap_or((0, Vec::new()));
        return sender.release(slot, keys, token).await;
    }
    let answers = join_all(
        groups
            .into_iter()
            .map(|(slot, keys)| sender.release(slot, keys, token)),
    )
    .await;
    let mut deleted = 0u64;
    let mut error = None;
    for a in answers {
        match a {
            Ok(n) => deleted = deleted.saturating_add(n),
            Err(e) => error = error.or(Some(e)),
        }
    }
    error.map_or(Ok(deleted), Err)
}

/// All or nothing: every slot is first read; when one key no longer holds
/// `token` nothing is changed. Only a key that expires between the read and
/// the extend can leave other slots extended (answered
/// [`Extend::NotHeld`]; those keys still hold the token).
pub async fn extend<S: SlotSender + ?Sized>(
    sender: &S,
    keys: &[String],
    token: &str,
    ttl_ms: u64,
) -> Result<Extend, NodeError> {
    let mut groups = groups(sender, keys);
    if groups.len() <= 1 {
        let (slot, keys) = groups.pop().unwrap_or((0, Vec::new()));
        return sender.extend(slot, keys, token, ttl_ms).await;
    }
    let checks = join_all(
        groups
            .iter()
            .map(|(slot, keys)| sender.inspect(*slot, keys.clone())),
    )
    .await;
    for check in checks {
        if !check?.iter().all(|s| s.holder.as_deref() == Some(token)) {
            return Ok(Extend::NotHeld);
        }
    }
    let answers = join_all(
        groups
            .into_iter()
            .map(|(slot, keys)| sender.extend(slot, keys, token, ttl_ms)),
    )
    .await;
    if answers.iter().any(|a| matches!(a, Ok(Extend::NotHeld))) {
        return Ok(Extend::NotHeld);
    }
    match answers.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(Extend::Extended),
    }
}

/// Reads every slot; the states in the order of `keys`.
pub async fn inspect<S: SlotSender + ?Sized>(
    sender: &S,
    keys: &[String],
) -> Result<Vec<KeyState>, NodeError> {
    let mut groups = groups(sender, keys);
    if groups.len() <= 1 {
        let (slot, keys) = groups.pop().unwrap_or((0, Vec::new()));
        return sender.inspect(slot, keys).await;
    }
    let answers = join_all(
        groups
            .into_iter()
            .map(|(slot, keys)| sender.inspect(slot, keys)),
    )
    .await;
    let mut by_key: HashMap<String, KeyState> = HashMap::with_capacity(keys.len());
    for answer in answers {
        for state in answer? {
            by_key.insert(state.key.clone(), state);
        }
    }
    keys.iter()
        .map(|k| {
            by_key
                .remove(k)
                .ok_or_else(|| NodeError::Protocol(format!("inspect reply is missing key {k:?}")))
        })
        .collect()
}

/// Raises the counters of every slot; the largest value any slot had.
pub async fn fence<S: SlotSender + ?Sized>(
    sender: &S,
    keys: &[String],
    floor: u64,
) -> Result<u64, NodeError> {
    let mut groups = groups(sender, keys);
    if groups.len() <= 1 {
        let (slot, keys) = groups.pop().unwrap_or((0, Vec::new()));
        return sender.fence(slot, keys, floor).await;
    }
    let answers = join_all(
        groups
            .into_iter()
            .map(|(slot, keys)| sender.fence(slot, keys, floor)),
    )
    .await;
    let mut max = 0u64;
    for a in answers {
        max = max.max(a?);
    }
    Ok(max)
}

/// How often a request refused with a redirection is sent again.
pub const MAX_REDIRECTS: usize = 3;

/// Whether a server error means "not run here, ask elsewhere or later":
/// `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`.
///
/// ```
/// use redlock_kit::slots::is_redirect;
///
/// assert!(is_redirect("MOVED 3999 127.0.0.1:6381"));
/// assert!(is_redirect("TRYAGAIN Multiple keys request during rehashing of slot"));
/// assert!(!is_redirect("ERR unknown command"));
/// ```
pub fn is_redirect(error: &str) -> bool {
    let code = error.split_whitespace().next().unwrap_or("");
    matches!(code, "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
}

/// Tells whether an acquire refused unrun (a redirection, `NOSCRIPT`) may be
/// sent again (see the [module docs](self)): counts the releases sent on
/// one node.
#[derive(Debug, Default)]
pub struct Resends {
    releases: AtomicU64,
}

/// The releases counted when a request was first sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent(u64);

impl Resends {
    /// Call before sending a release.
    pub fn releasing(&self) {
        self.releases.fetch_add(1, Ordering::SeqCst);
    }

    /// Call before first sending a request; keep the answer for
    /// [`may_resend_acquire`](Self::may_resend_acquire).
    pub fn sending(&self) -> Sent {
        Sent(self.releases.load(Ordering::SeqCst))
    }

    /// Whether an acquire first sent at `sent`, and refused unrun, may be
    /// sent again: only when no release went out since.
    pub fn may_resend_acquire(&self, sent: Sent) -> bool {
        self.releases.load(Ordering::SeqCst) == sent.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    /// A cluster in memory: key → token; some slots refuse with an error.
    #[derive(Default)]
    struct Fake {
        keys: Mutex<HashMap<String, String>>,
        failing: HashSet<u16>,
        unsent: bool,
        requests: Mutex<Vec<(u16, &'static str)>>,
    }

    impl Fake {
        fn note(&self, slot: u16, keys: &[String], what: &'static str) {
            assert!(
                keys.iter().all(|k| hash_slot(k.as_bytes()) == slot),
                "CROSSSLOT"
            );
            self.requests.lock().unwrap().push((slot, what));
        }
        fn fail(&self, slot: u16) -> Result<(), NodeError> {
            match (self.failing.contains(&slot), self.unsent) {
                (false, _) => Ok(()),
                (true, false) => Err(NodeError::Connection("reset".into())),
                (true, true) => Err(NodeError::Backlog(1)),
            }
        }
    }

    #[async_trait::async_trait]
    impl SlotSender for Fake {
        async fn acquire(
            &self,
            slot: u16,
            keys: Vec<String>,
            token: &str,
            _: u64,
        ) -> Result<Acquire, NodeError> {
            self.note(slot, &keys, "acquire");
            self.fail(slot)?;
            let mut held = self.keys.lock().unwrap();
            if keys.iter().any(|k| held.contains_key(k)) {
                return Ok(Acquire::Held);
            }
            for k in keys {
                held.insert(k, token.to_owned());
            }
            Ok(Acquire::Acquired)
        }
        async fn release(
            &self,
            slot: u16,
            keys: Vec<String>,
            token: &str,
        ) -> Result<u64, NodeError> {
            self.note(slot, &keys, "release");
            let mut held = self.keys.lock().unwrap();
            let mut n = 0;
            for k in keys {
                if held.get(&k).is_some_and(|t| t == token) {
                    held.remove(&k);
                    n += 1;
                }
            }
            Ok(n)
        }
        async fn extend(
            &self,
            slot: u16,
            keys: Vec<String>,
            token: &str,
            _: u64,
        ) -> Result<Extend, NodeError> {
            self.note(slot, &keys, "extend");
            let held = self.keys.lock().unwrap();
            Ok(
                if keys.iter().all(|k| held.get(k).is_some_and(|t| t == token)) {
                    Extend::Extended
                } else {
                    Extend::NotHeld
                },
            )
        }
        async fn inspect(&self, slot: u16, keys: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
            self.note(slot, &keys, "inspect");
            let held = self.keys.lock().unwrap();
            Ok(keys
                .into_iter()
                .map(|k| {
                    let holder = held.get(&k).cloned();
                    KeyState::new(k, holder, None)
                })
                .collect())
        }
        async fn fence(&self, slot: u16, keys: Vec<String>, floor: u64) -> Result<u64, NodeError> {
            self.note(slot, &keys, "fence");
            Ok(floor + u64::from(slot))
        }
    }

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Three keys in three different slots.
    fn spread() -> Vec<String> {
        let k = keys(&["a", "b", "c"]);
        let slots: HashSet<u16> = k.iter().map(|k| hash_slot(k.as_bytes())).collect();
        assert_eq!(slots.len(), 3);
        k
    }

    /// A single server: never split.
    struct Single(Fake);

    #[async_trait::async_trait]
    impl SlotSender for Single {
        fn clustered(&self) -> bool {
            false
        }
        async fn acquire(
            &self,
            slot: u16,
            keys: Vec<String>,
            token: &str,
            ttl: u64,
        ) -> Result<Acquire, NodeError> {
            self.0.requests.lock().unwrap().push((slot, "acquire"));
            assert_eq!(keys.len(), 3);
            let _ = (token, ttl);
            Ok(Acquire::Acquired)
        }
        async fn release(&self, _: u16, _: Vec<String>, _: &str) -> Result<u64, NodeError> {
            unreachable!("not called")
        }
        async fn extend(
            &self,
            _: u16,
            _: Vec<String>,
            _: &str,
            _: u64,
        ) -> Result<Extend, NodeError> {
            unreachable!("not called")
        }
        async fn inspect(&self, _: u16, _: Vec<String>) -> Result<Vec<KeyState>, NodeError> {
            unreachable!("not called")
        }
        async fn fence(&self, _: u16, _: Vec<String>, _: u64) -> Result<u64, NodeError> {
            unreachable!("not called")
        }
    }

    #[tokio::test]
    async fn a_single_server_gets_one_request_on_the_first_keys_slot() {
        let single = Single(Fake::default());
        assert_eq!(
            acquire(&single, &spread(), "t", 100).await,
            Ok(Acquire::Acquired)
        );
        assert_eq!(
            *single.0.requests.lock().unwrap(),
            [(hash_slot(b"a"), "acquire")]
        );
    }

    #[tokio::test]
    async fn one_slot_is_one_request() {
        let fake = Fake::default();
        let k = keys(&["{x}a", "{x}b"]);
        assert_eq!(acquire(&fake, &k, "t", 100).await, Ok(Acquire::Acquired));
        assert_eq!(fake.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_conflict_on_one_slot_gives_back_the_others() {
        let fake = Fake::default();
        let k = spread();
        fake.keys.lock().unwrap().insert("b".into(), "other".into());
        assert_eq!(acquire(&fake, &k, "t", 100).await, Ok(Acquire::Held));
        let held = fake.keys.lock().unwrap().clone();
        assert_eq!(held, HashMap::from([("b".to_owned(), "other".to_owned())]));
        let releases = fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.1 == "release")
            .count();
        assert_eq!(releases, 2, "not where it was held");
    }

    #[tokio::test]
    async fn an_error_on_one_slot_gives_back_the_others_and_is_reported() {
        let k = spread();
        let fake = Fake {
            failing: HashSet::from([hash_slot(b"c")]),
            ..Fake::default()
        };
        let err = acquire(&fake, &k, "t", 100).await.expect_err("failed slot");
        assert!(matches!(err, NodeError::Connection(_)));
        assert!(fake.keys.lock().unwrap().is_empty());
        let releases = fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.1 == "release")
            .count();
        assert_eq!(releases, 3, "also where it may have been sent");
        // Refused unsent: no release owed there.
        let fake = Fake {
            failing: HashSet::from([hash_slot(b"c")]),
            unsent: true,
            ..Fake::default()
        };
        assert!(acquire(&fake, &k, "t", 100).await.is_err());
        let releases = fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.1 == "release")
            .count();
        assert_eq!(releases, 2);
    }

    #[tokio::test]
    async fn extend_changes_nothing_when_one_key_is_not_ours() {
        let fake = Fake::default();
        let k = spread();
        assert_eq!(acquire(&fake, &k, "t", 100).await, Ok(Acquire::Acquired));
        assert_eq!(extend(&fake, &k, "t", 100).await, Ok(Extend::Extended));
        fake.keys.lock().unwrap().insert("a".into(), "other".into());
        fake.requests.lock().unwrap().clear();
        assert_eq!(extend(&fake, &k, "t", 100).await, Ok(Extend::NotHeld));
        assert!(fake
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.1 == "inspect"));
    }

    #[tokio::test]
    async fn release_inspect_and_fence_combine_the_slots() {
        let fake = Fake::default();
        let k = spread();
        assert_eq!(acquire(&fake, &k, "t", 100).await, Ok(Acquire::Acquired));
        let states = inspect(&fake, &k).await.expect("read");
        let order: Vec<&str> = states.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        let top = k.iter().map(|k| hash_slot(k.as_bytes())).max().unwrap_or(0);
        assert_eq!(fence(&fake, &k, 10).await, Ok(10 + u64::from(top)));
        assert_eq!(release(&fake, &k, "t").await, Ok(3));
        assert_eq!(release(&fake, &k, "t").await, Ok(0));
    }

    #[test]
    fn an_acquire_is_not_resent_after_a_release() {
        let r = Resends::default();
        let sent = r.sending();
        assert!(r.may_resend_acquire(sent));
        r.releasing();
        assert!(!r.may_resend_acquire(sent));
        assert!(r.may_resend_acquire(r.sending()));
    }
}
