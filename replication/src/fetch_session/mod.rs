//! KIP-227 incremental fetch sessions, both ends, as pure code.
//!
//! A follower fetching hundreds of partitions from one leader sends them
//! all in every Fetch, and the leader answers every one of them, even when
//! nothing moved. With a session the leader remembers what the follower
//! last asked for each partition ([`SessionCache`]) and the follower sends
//! only what changed since ([`SessionBuilder`]); the leader answers only
//! partitions with records, an error, or a new high watermark, log start
//! or last stable offset. An idle partition then costs nothing on the
//! wire.
//!
//! The wire rules (Kafka's `FetchSessionCache` and `FetchSessionHandler`):
//! - session id 0 and epoch 0: a full fetch that asks for a new session;
//!   the response names it (or 0 if the leader declines one);
//! - session id 0 and epoch -1: a full fetch without a session;
//! - session id `s` and epoch 0 or -1: closes `s` first, then as above;
//! - session id `s` and epoch `e > 0`: the next fetch of `s`, which must
//!   expect exactly `e` (else INVALID_FETCH_SESSION_EPOCH; an unknown `s`
//!   is FETCH_SESSION_ID_NOT_FOUND). Its partitions are added or updated,
//!   its forgotten ones dropped, and the fetch reads every partition the
//!   session holds.
//!
//! Either error sends the follower back to a full fetch. Keys and per
//! partition values are the caller's: the broker uses (topic, partition),
//! the request's partition, and the answer's offsets.

use std::collections::{BTreeMap, HashMap};

#[cfg(test)]
mod tests;

/// The session id that means "no session".
pub const NO_SESSION: i32 = 0;
/// The epoch of a full fetch that asks for a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch without a session (and closing one).
pub const FINAL_EPOCH: i32 = -1;

/// Why a fetch's session cannot be used: Kafka's error codes name these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND: the leader has no such session (it was
    /// evicted, or the leader restarted), or it is another fetcher's.
    IdNotFound,
    /// INVALID_FETCH_SESSION_EPOCH: the session expects another epoch (a
    /// request or its response was lost).
    InvalidEpoch,
}

/// How the leader answers a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// No session: every requested partition, in full; the response names
    /// session 0.
    Sessionless,
    /// A session just created: every partition it holds, in full; the
    /// response names `id`.
    Full {
        /// The new session.
        id: i32,
    },
    /// The fetch of session `id` at `epoch`: the response carries only the
    /// partitions whose answer changed.
    Incremental {
        /// The session.
        id: i32,
        /// The request's epoch.
        epoch: i32,
    },
}

impl Context {
    /// The session id the response names.
    pub fn id(&self) -> i32 {
        match *self {
            Context::Sessionless => NO_SESSION,
            Context::Full { id } | Context::Incremental { id, .. } => id,
        }
    }

    /// The epoch the session expects next once this fetch is answered.
    fn next_epoch(&self) -> Option<i32> {
        match *self {
            Context::Sessionless => None,
            Context::Full { .. } => Some(next(INITIAL_EPOCH)),
            Context::Incremental { epoch, .. } => Some(next(epoch)),
        }
    }
}

/// The epoch after `epoch` (Kafka wraps to 1, never 0 or -1).
pub fn next(epoch: i32) -> i32 {
    match epoch {
        i32::MAX => 1,
        e => e + 1,
    }
}

/// What a fetch says about its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest<K, P> {
    /// The fetching replica: a session is its own.
    pub owner: i32,
    /// The session id (0: none).
    pub id: i32,
    /// The session epoch.
    pub epoch: i32,
    /// The partitions the request carries, in its order.
    pub partitions: Vec<(K, P)>,
    /// Partitions to drop from the session.
    pub forgotten: Vec<K>,
}

/// One partition a leader's session holds.
#[derive(Debug, Clone)]
struct Held<P, A> {
    /// What the follower last asked for it.
    request: P,
    /// The answer last sent for it, if any.
    answered: Option<A>,
}

/// One follower's session at the leader.
#[derive(Debug, Clone)]
struct LeaderSession<K, P, A> {
    owner: i32,
    /// The epoch its next fetch must carry.
    next_epoch: i32,
    last_used_ms: u64,
    partitions: BTreeMap<K, Held<P, A>>,
}

/// A leader's sessions (Kafka's `FetchSessionCache`): at most `slots`,
/// one per owner; when full, a new one evicts the least recently used.
#[derive(Debug, Clone)]
pub struct SessionCache<K, P, A> {
    slots: usize,
    sessions: HashMap<i32, LeaderSession<K, P, A>>,
}

impl<K: Ord + Clone, P: Clone, A: PartialEq + Clone> SessionCache<K, P, A> {
    /// A cache of at most `slots` sessions (0: sessions are declined).
    pub fn new(slots: usize) -> SessionCache<K, P, A> {
        SessionCache {
            slots,
            sessions: HashMap::new(),
        }
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Each session's owner and the epoch its next fetch must carry.
    pub fn epochs(&self) -> Vec<(i32, i32)> {
        let sessions = self.sessions.values();
        sessions.map(|s| (s.owner, s.next_epoch)).collect()
    }

    /// Resolves a fetch arriving at `now_ms`: how to answer it and the
    /// partitions to read (a session's, in key order; a sessionless
    /// fetch's, as requested). `fresh_id` draws candidate ids for a new
    /// session; one that is 0 or taken is drawn again (a few times, then
    /// the session is declined).
    pub fn open(
        &mut self,
        request: SessionRequest<K, P>,
        now_ms: u64,
        mut fresh_id: impl FnMut() -> i32,
    ) -> Result<(Context, Vec<(K, P)>), SessionError> {
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            self.close(request.owner, request.id);
            let id = (request.epoch == INITIAL_EPOCH && self.slots > 0)
                .then(|| (0..8).map(|_| fresh_id()).find(|id| self.is_free(*id)))
                .flatten();
            let Some(id) = id else {
                return Ok((Context::Sessionless, request.partitions));
            };
            self.create(id, request, now_ms);
            return Ok((Context::Full { id }, self.reads(id)));
        }
        let session = self
            .sessions
            .get_mut(&request.id)
            .filter(|s| s.owner == request.owner)
            .ok_or(SessionError::IdNotFound)?;
        if session.next_epoch != request.epoch {
            return Err(SessionError::InvalidEpoch);
        }
        update(
            &mut session.partitions,
            request.partitions,
            &request.forgotten,
        );
        session.next_epoch = next(request.epoch);
        session.last_used_ms = now_ms;
        let context = Context::Incremental {
            id: request.id,
            epoch: request.epoch,
        };
        Ok((context, self.reads(request.id)))
    }

    /// Whether the answer `answer` for `key` goes into the response to a
    /// fetch opened as `context` (and if so it is remembered as sent): in
    /// a full or sessionless answer always; in an incremental one if it
    /// carries records or an error (`urgent`) or differs from the last
    /// sent. Fails if another fetch of the session came in between or the
    /// session is gone: the whole response is then that error.
    pub fn include(
        &mut self,
        context: Context,
        key: &K,
        answer: &A,
        urgent: bool,
    ) -> Result<bool, SessionError> {
        let Some(expected) = context.next_epoch() else {
            return Ok(true);
        };
        let session = self
            .sessions
            .get_mut(&context.id())
            .ok_or(SessionError::IdNotFound)?;
        if session.next_epoch != expected {
            return Err(SessionError::InvalidEpoch);
        }
        let Some(held) = session.partitions.get_mut(key) else {
            return Ok(false); // forgotten meanwhile: nothing to say
        };
        let full = matches!(context, Context::Full { .. });
        let send = full || urgent || held.answered.as_ref() != Some(answer);
        if send {
            held.answered = Some(answer.clone());
        }
        Ok(send)
    }

    /// Drops session `id` if `owner` holds it.
    fn close(&mut self, owner: i32, id: i32) {
        if self.sessions.get(&id).is_some_and(|s| s.owner == owner) {
            self.sessions.remove(&id);
        }
    }

    fn is_free(&self, id: i32) -> bool {
        id != NO_SESSION && !self.sessions.contains_key(&id)
    }

    /// Makes session `id` from a full fetch: the owner's older session
    /// goes, and the least recently used one if no slot is free.
    fn create(&mut self, id: i32, request: SessionRequest<K, P>, now_ms: u64) {
        self.sessions.retain(|_, s| s.owner != request.owner);
        if self.sessions.len() >= self.slots {
            let oldest = self.sessions.iter().min_by_key(|(_, s)| s.last_used_ms);
            if let Some(oldest) = oldest.map(|(id, _)| *id) {
                self.sessions.remove(&oldest);
            }
        }
        let mut partitions = BTreeMap::new();
        update(&mut partitions, request.partitions, &request.forgotten);
        let session = LeaderSession {
            owner: request.owner,
            next_epoch: next(INITIAL_EPOCH),
            last_used_ms: now_ms,
            partitions,
        };
        self.sessions.insert(id, session);
    }

    fn reads(&self, id: i32) -> Vec<(K, P)> {
        let session = &self.sessions[&id];
        let held = session.partitions.iter();
        held.map(|(k, h)| (k.clone(), h.request.clone())).collect()
    }
}

/// Adds or updates `partitions`, then drops `forgotten` (Kafka's order).
/// An updated partition keeps its last answer: the follower learns of a
/// change only from a differing one.
fn update<K: Ord, P, A>(
    held: &mut BTreeMap<K, Held<P, A>>,
    partitions: Vec<(K, P)>,
    forgotten: &[K],
) {
    for (key, request) in partitions {
        match held.get_mut(&key) {
            Some(h) => h.request = request,
            None => {
                let answered = None;
                held.insert(key, Held { request, answered });
            }
        }
    }
    for key in forgotten {
        held.remove(key);
    }
}

/// The next fetch a follower sends: its session fields and what it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<K, P> {
    /// The session id to send.
    pub id: i32,
    /// The session epoch to send.
    pub epoch: i32,
    /// The partitions to list: all of them in a full fetch, the new and
    /// changed ones in an incremental one.
    pub partitions: Vec<(K, P)>,
    /// Partitions the session holds that are no longer wanted.
    pub forgotten: Vec<K>,
}

/// A follower's end of its session with one leader (Kafka's
/// `FetchSessionHandler`): one fetch at a time is built, sent and answered.
#[derive(Debug, Clone)]
pub struct SessionBuilder<K, P> {
    id: i32,
    /// The epoch of the next fetch: 0 until a session is made.
    next_epoch: i32,
    /// What the leader's session holds once the last built fetch is
    /// answered.
    sent: BTreeMap<K, P>,
    /// The epoch of the fetch built and not yet answered.
    pending: Option<i32>,
}

impl<K: Ord + Clone, P: Clone + PartialEq> Default for SessionBuilder<K, P> {
    fn default() -> Self {
        SessionBuilder {
            id: NO_SESSION,
            next_epoch: INITIAL_EPOCH,
            sent: BTreeMap::new(),
            pending: None,
        }
    }
}

impl<K: Ord + Clone, P: Clone + PartialEq> SessionBuilder<K, P> {
    /// The session id held (0: none yet).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The fetch that brings the leader's session to `wanted`: all of it
    /// while there is no session (closing an old one), else what differs.
    pub fn build(&mut self, wanted: &BTreeMap<K, P>) -> Plan<K, P> {
        let epoch = self.next_epoch;
        let plan = match epoch {
            INITIAL_EPOCH => Plan {
                id: self.id,
                epoch,
                partitions: wanted.iter().map(|(k, p)| (k.clone(), p.clone())).collect(),
                forgotten: Vec::new(),
            },
            _ => Plan {
                id: self.id,
                epoch,
                partitions: wanted
                    .iter()
                    .filter(|(k, p)| self.sent.get(*k) != Some(*p))
                    .map(|(k, p)| (k.clone(), p.clone()))
                    .collect(),
                forgotten: self
                    .sent
                    .keys()
                    .filter(|k| !wanted.contains_key(*k))
                    .cloned()
                    .collect(),
            },
        };
        self.sent = wanted.clone();
        self.pending = Some(epoch);
        plan
    }

    /// The answer to the fetch last built: the session id it names, or the
    /// session error it carries. An error (or an incremental answer naming
    /// another session) makes the next fetch full.
    pub fn answered(&mut self, answer: Result<i32, SessionError>) {
        let Some(epoch) = self.pending.take() else {
            return self.reset();
        };
        match answer {
            Ok(id) if epoch == INITIAL_EPOCH => {
                self.id = id;
                self.next_epoch = match id {
                    NO_SESSION => INITIAL_EPOCH,
                    _ => next(INITIAL_EPOCH),
                };
            }
            Ok(id) if id == self.id => self.next_epoch = next(epoch),
            Ok(_) | Err(_) => self.reset(),
        }
    }

    /// The fetch last built went unanswered (its connection was lost, or
    /// it was abandoned): the next fetch is full, closing this session.
    pub fn reset(&mut self) {
        self.next_epoch = INITIAL_EPOCH;
        self.pending = None;
    }
}
