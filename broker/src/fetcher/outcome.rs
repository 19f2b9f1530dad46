//! What a replica fetcher does with a partition's answer, by Kafka error
//! code (Kafka's `AbstractFetcherThread.processFetchRequest`). Pure.

use kafka_protocol::ResponseError;

/// The next step for one partition after a Fetch or OffsetForLeaderEpoch
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Append what came (if anything) and fetch on.
    Append,
    /// The leader's log starts past this replica's end (retention ran
    /// while it was away): drop the whole log and start it at the leader's
    /// log start (Kafka's `truncateFullyAndStartAt`).
    TruncateFully(i64),
    /// Ask the leader where this replica's epochs end again and cut there
    /// (a fetch past the leader's end, after an unclean history).
    Truncate,
    /// This fetcher's epoch is stale: nothing to do until this broker's
    /// own image brings the newer one.
    WaitForImage,
    /// A transient refusal: the leader has not seen the epoch or the topic
    /// yet, or does not serve as leader right now (its lease lapsed while
    /// it was paused, or its image is behind its registration: the image
    /// here may not change at all before it serves again), or a storage
    /// error there. Try again after a pause.
    Backoff,
}

/// The step for `code` in a partition's answer to a fetch at
/// `fetch_offset`; `leader_log_start` is the answer's log start offset
/// (-1 when it has none).
pub fn next(code: i16, fetch_offset: i64, leader_log_start: i64) -> Next {
    if code == 0 {
        return Next::Append;
    }
    match ResponseError::try_from_code(code) {
        Some(ResponseError::OffsetOutOfRange) if fetch_offset < leader_log_start => {
            Next::TruncateFully(leader_log_start)
        }
        Some(ResponseError::OffsetOutOfRange) => Next::Truncate,
        Some(ResponseError::FencedLeaderEpoch) => Next::WaitForImage,
        _ => Next::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_step() {
        let code = |e: ResponseError| e.code();
        let cases = [
            ("records", 0, 10, 0, Next::Append),
            (
                "behind the leader's log start",
                code(ResponseError::OffsetOutOfRange),
                10,
                500,
                Next::TruncateFully(500),
            ),
            (
                "past the leader's end",
                code(ResponseError::OffsetOutOfRange),
                900,
                500,
                Next::Truncate,
            ),
            (
                "out of range, no log start given",
                code(ResponseError::OffsetOutOfRange),
                10,
                -1,
                Next::Truncate,
            ),
            (
                "fenced: our epoch is stale",
                code(ResponseError::FencedLeaderEpoch),
                10,
                0,
                Next::WaitForImage,
            ),
            (
                "asked broker does not serve as leader now (lease, image)",
                code(ResponseError::NotLeaderOrFollower),
                10,
                0,
                Next::Backoff,
            ),
            (
                "leader has not seen our epoch yet",
                code(ResponseError::UnknownLeaderEpoch),
                10,
                0,
                Next::Backoff,
            ),
            (
                "leader has not seen the topic yet",
                code(ResponseError::UnknownTopicOrPartition),
                10,
                0,
                Next::Backoff,
            ),
            (
                "storage error at the leader",
                code(ResponseError::KafkaStorageError),
                10,
                0,
                Next::Backoff,
            ),
            ("a code nobody knows", 9999, 10, 0, Next::Backoff),
        ];
        for (name, code, fetch_offset, log_start, expected) in cases {
            assert_eq!(next(code, fetch_offset, log_start), expected, "{name}");
        }
    }
}
