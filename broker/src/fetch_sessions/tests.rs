//! Fetch sessions through the Fetch handler on a whole `Broker` leading
//! `t-0` (`crate::replica_manager::tests`): what a follower's session
//! reads and answers, and what it counts of the follower.

use crate::clock::ManualClock;
use crate::handlers::fetch::prepare;
use crate::replica_manager::append_records;
use crate::replica_manager::tests::{
    broker_leading, broker_leading_on, entry, image, open_broker, EPOCH, TOPIC,
};
use crate::state::Broker;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

/// Follower 2's fetch of session `id` at `epoch`, listing `t-0` at
/// `offset` if given, forgetting it if `forget`.
fn request(id: i32, epoch: i32, offset: Option<i64>, forget: bool) -> FetchRequest {
    let listed = offset.map(|o| {
        let p = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(o)
            .with_current_leader_epoch(EPOCH)
            .with_partition_max_bytes(1 << 20);
        FetchTopic::default()
            .with_topic(crate::handlers::topic_name(TOPIC))
            .with_partitions(vec![p])
    });
    let forgotten = forget.then(|| {
        ForgottenTopic::default()
            .with_topic(crate::handlers::topic_name(TOPIC))
            .with_partitions(vec![0])
    });
    FetchRequest::default()
        .with_replica_id(BrokerId(2))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch)
        .with_topics(listed.into_iter().collect())
        .with_forgotten_topics_data(forgotten.into_iter().collect())
}

async fn send(broker: &Arc<Broker>, request: FetchRequest) -> FetchResponse {
    prepare(broker, request, 12).await
}

/// The partitions the response carries, with whether each has records.
fn carried(response: &FetchResponse) -> Vec<(i32, bool)> {
    let partitions = response.responses.iter().flat_map(|t| &t.partitions);
    let has_records = |r: &Option<bytes::Bytes>| r.as_ref().is_some_and(|r| !r.is_empty());
    partitions
        .map(|p| (p.partition_index, has_records(&p.records)))
        .collect()
}

async fn append_one(broker: &Arc<Broker>) {
    let results = append_records(broker, 1, Duration::from_secs(1), vec![entry(None)]).await;
    assert!(results[0].2.is_ok());
}

#[tokio::test]
async fn a_follower_session_reads_what_it_holds_and_answers_only_news() {
    let (broker, _dir) = broker_leading(vec![1, 2], vec![1, 2]);
    let full = send(&broker, request(0, 0, Some(0), false)).await;
    let id = full.session_id;
    assert_ne!(id, 0, "a follower's full fetch makes a session");
    assert_eq!(carried(&full), vec![(0, false)], "a full answer lists all");

    let idle = send(&broker, request(id, 1, None, false)).await;
    assert_eq!((idle.error_code, idle.session_id), (0, id));
    assert_eq!(carried(&idle), vec![], "nothing new, nothing listed");

    append_one(&broker).await;
    let news = send(&broker, request(id, 2, None, false)).await;
    assert_eq!(
        carried(&news),
        vec![(0, true)],
        "the session's offset is read though the request lists nothing"
    );

    let again = send(&broker, request(id, 2, None, false)).await;
    let code = ResponseError::InvalidFetchSessionEpoch.code();
    assert_eq!(again.error_code, code, "an epoch already used");
    let unknown = send(&broker, request(id + 1, 1, None, false)).await;
    let code = ResponseError::FetchSessionIdNotFound.code();
    assert_eq!(unknown.error_code, code, "a session nobody made");

    let forgot = send(&broker, request(id, 3, None, true)).await;
    assert_eq!((forgot.error_code, carried(&forgot)), (0, vec![]));
    append_one(&broker).await;
    let after = send(&broker, request(id, 4, None, false)).await;
    assert_eq!(carried(&after), vec![], "a forgotten partition is not read");
}

#[tokio::test]
async fn a_consumer_is_answered_in_full_without_a_session() {
    let (broker, _dir) = broker_leading(vec![1, 2], vec![1, 2]);
    let asks = request(0, 0, Some(0), false).with_replica_id(BrokerId(-1));
    let response = crate::handlers::fetch::handle(&broker, asks, 12).await;
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(carried(&response), vec![(0, false)]);
}

/// A follower's fetch that lists nothing still counts its position in
/// every partition of its session, so an idle follower stays in the ISR.
#[tokio::test]
async fn an_idle_session_keeps_the_follower_in_the_isr() {
    let clock = Arc::new(ManualClock::at(1_000, 1_700_000_000_000));
    let (broker, _dir) = broker_leading_on(clock.clone(), vec![1, 2], vec![1, 2]);
    let lag_ms = broker.config.replica_lag_time_max_ms;
    let full = send(&broker, request(0, 0, Some(0), false)).await;
    let partition = broker.partition(TOPIC, 0).expect("replica");
    clock.advance(lag_ms - 1);
    send(&broker, request(full.session_id, 1, None, false)).await;
    clock.advance(lag_ms - 1);
    let now = broker.now_ms();
    assert_eq!(partition.propose_isr(now, |_| true), None, "no shrink");
}

/// Two whole brokers over real TCP: broker 2's fetcher follows `t-0` from
/// broker 1 in one session whose epochs advance (its fetches are
/// incremental), and acks=all writes complete through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_replicates_through_an_incremental_session() {
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock::new());
    let (leader, _d1) = open_broker(1, clock.clone());
    let (follower, _d2) = open_broker(2, clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = tokio::spawn(crate::server::serve(
        leader.clone(),
        listener,
        std::future::pending(),
    ));
    let brokers = [(1, addr), (2, "127.0.0.1:1".to_string())];
    for broker in [&leader, &follower] {
        let image = image(vec![1, 2], vec![1, 2], &brokers);
        broker.apply_image(image).expect("apply image");
    }
    for _ in 0..5 {
        let appended = append_records(&leader, -1, Duration::from_secs(10), vec![entry(None)]);
        assert!(appended.await[0].2.is_ok(), "acks=all completes");
    }
    // Idle long polls go on in the session.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let ends = |b: &Broker| b.partition(TOPIC, 0).expect("replica").offsets().2;
    assert_eq!(ends(&follower), ends(&leader));
    let epochs = leader.fetch_sessions.epochs();
    assert_eq!(epochs.len(), 1, "one session: {epochs:?}");
    let (owner, next_epoch) = epochs[0];
    assert_eq!(owner, 2);
    assert!(next_epoch >= 4, "incremental fetches: {epochs:?}");
    serving.abort();
}
