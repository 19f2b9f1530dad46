//! openraft's storage conformance suite against Baton's durable log store
//! and state machine, plus what the suite does not cover: surviving a
//! reopen (log, vote, purge point, snapshot).

use controller::raft::log_store::LogStore;
use controller::raft::state_machine::StateMachine;
use controller::raft::TypeConfig;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{RaftLogReader, RaftSnapshotBuilder, StorageError};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("log")).expect("log store");
        let sm = StateMachine::open(&dir.path().join("sm"), false).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

#[test]
fn everything_survives_a_reopen() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (log_dir, sm_dir) = (dir.path().join("log"), dir.path().join("sm"));
        let leader = openraft::CommittedLeaderId::new(3, 1);
        let entry = |i: u64| openraft::Entry::<TypeConfig> {
            log_id: openraft::LogId::new(leader, i),
            payload: openraft::EntryPayload::Normal(
                controller::commands::Command::RegisterBroker {
                    id: i as i32,
                    endpoint: format!("b{i}:9092"),
                    incarnation: 0,
                },
            ),
        };
        {
            let mut log = LogStore::open(&log_dir).unwrap();
            openraft::storage::RaftLogStorageExt::blocking_append(&mut log, (1..=5).map(entry))
                .await
                .unwrap();
            log.save_vote(&openraft::Vote::new_committed(3, 1))
                .await
                .unwrap();
            log.purge(openraft::LogId::new(leader, 2)).await.unwrap();
            let mut sm = StateMachine::open(&sm_dir, false).unwrap();
            sm.apply((1..=5).map(entry)).await.unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
        }
        let mut log = LogStore::open(&log_dir).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(5));
        let indexes: Vec<u64> = log
            .try_get_log_entries(0..10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, vec![3, 4, 5]);
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(openraft::Vote::new_committed(3, 1))
        );
        let sm = StateMachine::open(&sm_dir, false).unwrap();
        let restored = sm.state();
        assert_eq!(restored.last_applied.map(|l| l.index), Some(5));
        assert_eq!(restored.metadata.brokers.len(), 5);
        assert_eq!(restored.metadata.next_broker_epoch, 5);
    });
}
