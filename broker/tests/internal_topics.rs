//! Internal topics (`__consumer_offsets`) cannot be deleted or given
//! partitions by clients, whatever the client: by name or by topic id on
//! the wire, and through `baton admin`. The refusal is
//! INVALID_TOPIC_EXCEPTION and loses nothing: committed offsets survive it.

mod common;

use common::group::{commit, committed};
use common::{create_topic, topic, Baton};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

const OFFSETS: &str = "__consumer_offsets";
const GROUP: &str = "keeps-its-offsets";

/// A committed offset of GROUP for `jobs-0`, which creates the offsets
/// topic.
async fn committed_group(conn: &mut client::Connection) {
    create_topic(conn, "jobs", 1).await;
    let batch = storage::batch::build_batch(&[b"a", b"b", b"c"], 1_000);
    assert_eq!(common::produce(conn, "jobs", 0, batch.into()).await.0, 0);
    assert_eq!(
        commit(conn, GROUP, "", -1, "jobs", &[(0, 2)]).await,
        vec![0]
    );
}

async fn offsets_topic_id(conn: &mut client::Connection) -> uuid::Uuid {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(OFFSETS))),
    ]));
    let r = conn.send(&req, 12).await.expect("metadata");
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    assert!(r.topics[0].is_internal, "Metadata flags it internal");
    r.topics[0].topic_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_topics_cannot_be_deleted_or_grown() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    committed_group(&mut conn).await;
    let id = offsets_topic_id(&mut conn).await;
    let invalid_topic = ResponseError::InvalidTopicException.code();

    // By name (v4) and by topic id (v6).
    let by_name = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic(OFFSETS)])
        .with_timeout_ms(10_000);
    let r = conn.send(&by_name, 4).await.expect("delete by name");
    assert_eq!(r.responses[0].error_code, invalid_topic, "{r:?}");
    let by_id = DeleteTopicsRequest::default()
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_topic_id(id)
        ])
        .with_timeout_ms(10_000);
    let r = conn.send(&by_id, 6).await.expect("delete by id");
    assert_eq!(r.responses[0].error_code, invalid_topic, "{r:?}");
    let message = r.responses[0].error_message.as_ref().expect("a reason");
    assert!(message.contains("internal topic"), "{message}");

    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic(OFFSETS))
                .with_count(20),
        ])
        .with_timeout_ms(10_000);
    let r = conn.send(&grow, 3).await.expect("create partitions");
    assert_eq!(r.results[0].error_code, invalid_topic, "{r:?}");

    // The CLI gets the same refusal and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "admin",
            "--bootstrap",
            &baton.addr,
            "topic",
            "delete",
            OFFSETS,
        ])
        .output()
        .expect("run baton admin");
    assert!(!out.status.success(), "deleting {OFFSETS} succeeded");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("internal topic"), "{said}");

    // Nothing was lost: the topic, its id and its partition count are
    // unchanged and the group's offset is still committed.
    assert_eq!(offsets_topic_id(&mut conn).await, id);
    assert_eq!(committed(&mut conn, GROUP, "jobs", &[0]).await, vec![2]);

    // An ordinary topic is still deletable: the refusal is about internal
    // topics only.
    let ordinary = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic("jobs")])
        .with_timeout_ms(10_000);
    let r = conn.send(&ordinary, 4).await.expect("delete jobs");
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
}
