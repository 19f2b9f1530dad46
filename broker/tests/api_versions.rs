//! Every advertised API answers correctly at its lowest and highest
//! advertised version, and ApiVersions advertises exactly that table.

mod common;

use bytes::Bytes;
use client::Connection;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use storage::batch::build_batch;

fn batch() -> Bytes {
    build_batch(&[b"one", b"two"], 1_000).into()
}

/// Sends one request of `api` at `version` on `name` and checks the answer.
async fn exercise(conn: &mut Connection, api: ApiKey, version: i16, name: &str) {
    let ctx = format!("{api:?} v{version}");
    match api {
        ApiKey::ApiVersions => {
            let r = conn
                .send(&ApiVersionsRequest::default(), version)
                .await
                .expect(&ctx);
            assert_eq!(r.error_code, 0, "{ctx}");
            let advertised: Vec<(i16, i16, i16)> = r
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version))
                .collect();
            let expected: Vec<(i16, i16, i16)> = broker::versions::SUPPORTED
                .iter()
                .map(|&(k, min, max)| (k as i16, min, max))
                .collect();
            assert_eq!(advertised, expected, "{ctx}");
        }
        ApiKey::Metadata => {
            let t = metadata_request::MetadataRequestTopic::default().with_name(Some(topic(name)));
            let r = conn
                .send(
                    &MetadataRequest::default().with_topics(Some(vec![t])),
                    version,
                )
                .await
                .expect(&ctx);
            assert_eq!(r.topics[0].error_code, 0, "{ctx}");
            assert_eq!(r.topics[0].partitions.len(), 1, "{ctx}");
            assert_eq!(
                r.brokers[0].port.to_string(),
                conn.addr().rsplit(':').next().unwrap(),
                "{ctx}"
            );
            if version >= 7 {
                assert_eq!(
                    r.topics[0].partitions[0].leader_epoch, 1,
                    "{ctx}: epochs start at 1"
                );
            }
        }
        ApiKey::Produce => {
            let r = conn
                .send(&produce_request(name, 0, batch(), -1), version)
                .await
                .expect(&ctx);
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{ctx}");
        }
        ApiKey::Fetch => {
            let r = conn
                .send(&fetch_request(name, 0, 0, 100), version)
                .await
                .expect(&ctx);
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "{ctx}");
            assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()), "{ctx}");
            assert!(p.high_watermark >= 2, "{ctx}");
        }
        ApiKey::ListOffsets => {
            let p = list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![p]);
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![t]);
            let r = conn.send(&req, version).await.expect(&ctx);
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.offset), (0, 2), "{ctx}");
        }
        ApiKey::OffsetForLeaderEpoch => {
            let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(1)
                .with_leader_epoch(1);
            let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic(name))
                .with_partitions(vec![p]);
            let req = OffsetForLeaderEpochRequest::default().with_topics(vec![t]);
            let r = conn.send(&req, version).await.expect(&ctx);
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.leader_epoch, p.end_offset),
                (0, 1, 2),
                "{ctx}"
            );
        }
        ApiKey::CreateTopics => {
            let t = create_topics_request::CreatableTopic::default()
                .with_name(topic(&format!("{name}-created")))
                .with_num_partitions(2)
                .with_replication_factor(1);
            let r = conn
                .send(
                    &CreateTopicsRequest::default()
                        .with_topics(vec![t])
                        .with_timeout_ms(5000),
                    version,
                )
                .await
                .expect(&ctx);
            assert_eq!(r.topics[0].error_code, 0, "{ctx}");
        }
        ApiKey::DeleteTopics => {
            let doomed = format!("{name}-doomed");
            create_topic(conn, &doomed, 1).await;
            let req = if version >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic(&doomed)))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic(&doomed)])
            };
            let r = conn
                .send(&req.with_timeout_ms(5000), version)
                .await
                .expect(&ctx);
            assert_eq!(r.responses[0].error_code, 0, "{ctx}");
        }
        ApiKey::CreatePartitions => {
            let grown = format!("{name}-grown");
            create_topic(conn, &grown, 1).await;
            let t = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic(&grown))
                .with_count(3);
            let r = conn
                .send(
                    &CreatePartitionsRequest::default()
                        .with_topics(vec![t])
                        .with_timeout_ms(5000),
                    version,
                )
                .await
                .expect(&ctx);
            assert_eq!(r.results[0].error_code, 0, "{ctx}");
        }
        ApiKey::DescribeConfigs => {
            let res = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name));
            let r = conn
                .send(
                    &DescribeConfigsRequest::default().with_resources(vec![res]),
                    version,
                )
                .await
                .expect(&ctx);
            assert_eq!(r.results[0].error_code, 0, "{ctx}");
            assert!(
                r.results[0]
                    .configs
                    .iter()
                    .any(|c| c.name.as_str() == "retention.ms"),
                "{ctx}: {r:?}"
            );
        }
        ApiKey::DescribeCluster => {
            let r = conn
                .send(&DescribeClusterRequest::default(), version)
                .await
                .expect(&ctx);
            assert_eq!(r.error_code, 0, "{ctx}");
            assert_eq!(r.cluster_id.len(), 22, "{ctx}");
            assert_eq!(r.brokers.len(), 1, "{ctx}");
        }
        ApiKey::FindCoordinator => {
            let req = if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("group")])
            } else {
                FindCoordinatorRequest::default().with_key(s("group"))
            };
            let r = retry!(r = conn.send(&req, version).await;
                r.as_ref().map_or(0, |r| r.coordinators.first().map_or(r.error_code, |c| c.error_code)))
            .expect(&ctx);
            let (code, port) = if version >= 4 {
                (r.coordinators[0].error_code, r.coordinators[0].port)
            } else {
                (r.error_code, r.port)
            };
            assert_eq!(code, 0, "{ctx}");
            assert_eq!(
                port.to_string(),
                conn.addr().rsplit(':').next().unwrap(),
                "{ctx}"
            );
        }
        ApiKey::OffsetCommit => {
            // As clients do: FindCoordinator first (creates the offsets topic).
            common::group::find(conn, "group").await;
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset((version as i64).min(2));
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![p]);
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s("group")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![t]);
            let r = retry!(r = conn.send(&req, version).await;
                r.as_ref().map_or(0, |r| r.topics[0].partitions[0].error_code))
            .expect(&ctx);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "{ctx}");
        }
        ApiKey::OffsetFetch => {
            let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic(name))
                .with_partition_indexes(vec![0]);
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("group")))
                .with_topics(Some(vec![t]));
            let r = retry!(r = conn.send(&req, version).await;
                r.as_ref().map_or(0, |r| r.topics.first().map_or(r.error_code, |t| t.partitions[0].error_code)))
            .expect(&ctx);
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "{ctx}");
            assert!(
                p.committed_offset >= 2,
                "{ctx}: the offset committed earlier, got {}",
                p.committed_offset
            );
        }
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups => exercise_group_api(conn, api, version, name).await,
        ApiKey::InitProducerId | ApiKey::DescribeProducers => {
            exercise_producer_api(conn, api, version, name).await
        }
        other => panic!("{other:?} is advertised but this test does not exercise it"),
    }
}

/// InitProducerId hands out a fresh id at epoch 0; DescribeProducers then
/// shows it after an idempotent produce of two records with it.
async fn exercise_producer_api(conn: &mut Connection, api: ApiKey, version: i16, name: &str) {
    let ctx = format!("{api:?} v{version}");
    let init = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let init_version = if api == ApiKey::InitProducerId {
        version
    } else {
        4
    };
    let r = conn.send(&init, init_version).await.expect(&ctx);
    assert_eq!(r.error_code, 0, "{ctx}");
    assert!(
        r.producer_id.0 >= 0 && r.producer_epoch == 0,
        "{ctx}: {r:?}"
    );
    if api != ApiKey::DescribeProducers {
        return;
    }
    let idempotent = storage::batch::with_producer(&batch(), r.producer_id.0, 0, 0);
    let produced = conn
        .send(&produce_request(name, 0, idempotent.into(), -1), 9)
        .await
        .expect(&ctx);
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code, 0,
        "{ctx}"
    );
    let topics = vec![describe_producers_request::TopicRequest::default()
        .with_name(topic(name))
        .with_partition_indexes(vec![0])];
    let d = conn
        .send(
            &DescribeProducersRequest::default().with_topics(topics),
            version,
        )
        .await
        .expect(&ctx);
    let p = &d.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{ctx}");
    let mine = p
        .active_producers
        .iter()
        .find(|a| a.producer_id == r.producer_id);
    assert_eq!(
        mine.map(|a| (a.producer_epoch, a.last_sequence)),
        Some((0, 1)),
        "{ctx}: {p:?}"
    );
}

/// The group APIs, each on a group of its own (`g-<api>-v<version>`).
async fn exercise_group_api(conn: &mut Connection, api: ApiKey, version: i16, name: &str) {
    use common::group::*;
    let ctx = format!("{api:?} v{version}");
    let group = format!("g-{api:?}-v{version}-{name}");
    let gid = || GroupId(s(&group));
    match api {
        ApiKey::JoinGroup => {
            let r = join(conn, &group, 10_000, version).await;
            assert_eq!((r.error_code, r.generation_id), (0, 1), "{ctx}: {r:?}");
            assert_eq!(r.leader, r.member_id, "{ctx}");
            assert_eq!(r.members.len(), 1, "{ctx}");
        }
        ApiKey::SyncGroup => {
            let r = join(conn, &group, 10_000, 7).await;
            let member = r.member_id.to_string();
            let a = assignment(name, &[0]);
            let synced = sync(
                conn,
                &group,
                &member,
                r.generation_id,
                vec![(member.clone(), a.clone())],
                version,
            )
            .await;
            assert_eq!(synced.error_code, 0, "{ctx}: {synced:?}");
            assert_eq!(synced.assignment, a, "{ctx}");
        }
        ApiKey::Heartbeat => {
            let (member, generation) = sole_member(conn, &group, name, &[0]).await;
            assert_eq!(
                heartbeat(conn, &group, &member, generation, version).await,
                0,
                "{ctx}"
            );
        }
        ApiKey::LeaveGroup => {
            let (member, _) = sole_member(conn, &group, name, &[0]).await;
            let req = if version >= 3 {
                let m = leave_group_request::MemberIdentity::default().with_member_id(s(&member));
                LeaveGroupRequest::default()
                    .with_group_id(gid())
                    .with_members(vec![m])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(gid())
                    .with_member_id(s(&member))
            };
            let r = conn.send(&req, version).await.expect(&ctx);
            assert_eq!(r.error_code, 0, "{ctx}: {r:?}");
            assert!(r.members.iter().all(|m| m.error_code == 0), "{ctx}: {r:?}");
        }
        ApiKey::ListGroups => {
            sole_member(conn, &group, name, &[0]).await;
            let r = conn
                .send(&ListGroupsRequest::default(), version)
                .await
                .expect(&ctx);
            assert_eq!(r.error_code, 0, "{ctx}");
            let listed = r.groups.iter().find(|g| g.group_id.0.as_str() == group);
            let listed = listed.unwrap_or_else(|| panic!("{ctx}: {group} not in {r:?}"));
            assert_eq!(listed.protocol_type.as_str(), "consumer", "{ctx}");
        }
        ApiKey::DescribeGroups => {
            let (member, _) = sole_member(conn, &group, name, &[0]).await;
            let req = DescribeGroupsRequest::default().with_groups(vec![gid()]);
            let r = conn.send(&req, version).await.expect(&ctx);
            let g = &r.groups[0];
            assert_eq!(
                (g.error_code, g.group_state.as_str()),
                (0, "Stable"),
                "{ctx}: {g:?}"
            );
            assert_eq!(g.members.len(), 1, "{ctx}");
            assert_eq!(g.members[0].member_id.as_str(), member, "{ctx}");
            assert_eq!(
                g.members[0].member_assignment,
                assignment(name, &[0]),
                "{ctx}"
            );
        }
        ApiKey::DeleteGroups => {
            // A group that only stores offsets (an admin-style commit).
            assert_eq!(
                commit(conn, &group, "", -1, name, &[(0, 1)]).await,
                vec![0],
                "{ctx}"
            );
            let req = DeleteGroupsRequest::default().with_groups_names(vec![gid()]);
            let r = conn.send(&req, version).await.expect(&ctx);
            assert_eq!(r.results[0].error_code, 0, "{ctx}: {r:?}");
            assert_eq!(
                committed(conn, &group, name, &[0]).await,
                vec![-1],
                "{ctx}: offsets deleted"
            );
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_at_its_lowest_and_highest_version() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    for (round, pick) in ["min", "max"].iter().enumerate() {
        let name = format!("versions-{pick}");
        create_topic(&mut conn, &name, 1).await;
        for &(api, min, max) in broker::versions::SUPPORTED {
            let version = if round == 0 { min } else { max };
            exercise(&mut conn, api, version, &name).await;
        }
    }
}

/// KIP-511: an ApiVersions request at a version the broker does not know
/// gets a v0 answer with UNSUPPORTED_VERSION and the supported table.
#[tokio::test]
async fn unknown_api_versions_version_gets_the_v0_fallback() {
    let baton = Baton::start(&[]);
    let mut conn = baton.connect().await;
    let mut frame = Vec::new();
    let body: Vec<u8> = [
        &18i16.to_be_bytes()[..],
        &99i16.to_be_bytes(),
        &7i32.to_be_bytes(),
        &(-1i16).to_be_bytes(),
    ]
    .concat();
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut response = conn
        .send_raw(&frame)
        .await
        .unwrap()
        .expect("an answer, not a close");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(
        body.error_code,
        kafka_protocol::ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(body.api_keys.len(), broker::versions::SUPPORTED.len());
    let _ = StrBytes::from_static_str("");
}
