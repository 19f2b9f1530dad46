//! The leader's end of KIP-227 fetch sessions (Kafka's `FetchManager`),
//! on the rules of `replication::fetch_session`: which partitions a
//! follower's fetch reads, and which of their answers its response
//! carries.
//!
//! Sessions are for followers (a fetch with `replica_id` ≥ 0). A consumer
//! asking for one gets session id 0, which KIP-227 lets a broker answer:
//! its client then goes on with full fetches, as against a broker whose
//! cache is full.

use crate::replica_manager::{FetchResults, FetchTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest};
use kafka_protocol::ResponseError;
use replication::fetch_session::{Context, SessionCache, SessionError, SessionRequest};
use std::sync::Mutex;

#[cfg(test)]
mod tests;

/// A partition: topic and index.
type Key = (String, i32);

/// What an answer without records tells the follower: its high watermark,
/// last stable offset and log start offset. An incremental response
/// carries a partition whose answer has records, an error, or a change in
/// these.
type Answered = (i64, i64, i64);

/// The sessions a broker keeps at most (Kafka's
/// `max.incremental.fetch.session.cache.slots` default); one per follower.
pub const SLOTS: usize = 1000;

/// A broker's fetch sessions.
#[derive(Debug)]
pub struct FetchSessions {
    cache: Mutex<SessionCache<Key, FetchPartition, Answered>>,
}

impl Default for FetchSessions {
    fn default() -> Self {
        FetchSessions {
            cache: Mutex::new(SessionCache::new(SLOTS)),
        }
    }
}

impl FetchSessions {
    /// Resolves `request`'s session at `now_ms`: how to answer it and the
    /// partitions it reads, by topic; or the session error that answers it.
    pub fn open(
        &self,
        request: &mut FetchRequest,
        now_ms: u64,
    ) -> Result<(Context, Vec<FetchTopic>), ResponseError> {
        let follower = request.replica_id.0 >= 0;
        if !follower {
            // A consumer's session is declined, so none of its can exist.
            return match request.session_id {
                0 => Ok((Context::Sessionless, topics(take_partitions(request)))),
                _ => Err(ResponseError::FetchSessionIdNotFound),
            };
        }
        let forgotten = std::mem::take(&mut request.forgotten_topics_data);
        let forgotten = forgotten.into_iter().flat_map(|t| {
            let name = t.topic.0.to_string();
            t.partitions.into_iter().map(move |p| (name.clone(), p))
        });
        let session = SessionRequest {
            owner: request.replica_id.0,
            id: request.session_id,
            epoch: request.session_epoch,
            partitions: take_partitions(request),
            forgotten: forgotten.collect(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (context, reads) = cache
            .open(session, now_ms, rand::random::<i32>)
            .map_err(error)?;
        Ok((context, topics(reads)))
    }

    /// The answers the response to a fetch opened as `context` carries:
    /// all of a full one, what changed of an incremental one (topics left
    /// with none are dropped); or the session error if another fetch of
    /// the session came in between.
    pub fn answer(
        &self,
        context: Context,
        results: FetchResults,
    ) -> Result<FetchResults, ResponseError> {
        if context == Context::Sessionless {
            return Ok(results);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut carried = Vec::with_capacity(results.len());
        for (topic, partitions) in results {
            let mut kept = Vec::new();
            for data in partitions {
                let key = (topic.clone(), data.partition_index);
                let answered = (
                    data.high_watermark,
                    data.last_stable_offset,
                    data.log_start_offset,
                );
                let has_records = data.records.as_ref().is_some_and(|r| !r.is_empty());
                let urgent = has_records || data.error_code != 0;
                if cache
                    .include(context, &key, &answered, urgent)
                    .map_err(error)?
                {
                    kept.push(data);
                }
            }
            if !kept.is_empty() {
                carried.push((topic, kept));
            }
        }
        Ok(carried)
    }

    /// Each session's owner and the epoch its next fetch must carry.
    pub fn epochs(&self) -> Vec<(i32, i32)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .epochs()
    }
}

fn error(e: SessionError) -> ResponseError {
    match e {
        SessionError::IdNotFound => ResponseError::FetchSessionIdNotFound,
        SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
    }
}

/// The request's partitions with their keys, in request order.
fn take_partitions(request: &mut FetchRequest) -> Vec<(Key, FetchPartition)> {
    let topics = std::mem::take(&mut request.topics);
    let keyed = topics.into_iter().flat_map(|t| {
        let name = t.topic.0.to_string();
        let partitions = t.partitions.into_iter();
        partitions.map(move |p| ((name.clone(), p.partition), p))
    });
    keyed.collect()
}

/// Partitions grouped by topic, keeping their order (a topic listed twice
/// apart is two entries, as in the request).
fn topics(partitions: Vec<(Key, FetchPartition)>) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, _), p) in partitions {
        match topics.last_mut().filter(|t| t.topic == topic) {
            Some(last) => last.partitions.push(p),
            None => topics.push(FetchTopic {
                topic,
                partitions: vec![p],
            }),
        }
    }
    topics
}
