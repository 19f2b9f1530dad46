//! SIGKILL the broker in the middle of an acks=all produce load, restart it
//! on the same data directory, and find every acknowledged record at its
//! acknowledged offset. A process kill keeps the page cache, so this checks
//! that nothing is acknowledged before it is appended and that recovery keeps
//! it; that the bytes were also synced is what the storage crate's crash
//! model (`storage/tests/group_commit.rs`, power-loss semantics) checks.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use storage::batch::{build_batch, split_batches};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut baton = Baton::start_in(&data, &[]);
    create_topic(&mut baton.connect().await, "crash", 1).await;

    let acked: Arc<Mutex<BTreeMap<i64, Vec<u8>>>> = Arc::default();
    let mut producers = Vec::new();
    for p in 0..4 {
        let (addr, acked) = (baton.addr.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            let Ok(mut conn) = client::Connection::connect(&addr).await else {
                return;
            };
            for i in 0.. {
                let value = format!("producer-{p}-record-{i}").into_bytes();
                let request = produce_request("crash", 0, build_batch(&[&value], 0).into(), -1);
                match conn.send(&request, 9).await {
                    Ok(r) if r.responses[0].partition_responses[0].error_code == 0 => {
                        let offset = r.responses[0].partition_responses[0].base_offset;
                        acked.lock().unwrap().insert(offset, value);
                    }
                    _ => return, // the broker is gone
                }
            }
        }));
    }
    wait_until(Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 500
    });
    baton.kill();
    for p in producers {
        let _ = p.await;
    }
    let acked = acked.lock().unwrap().clone();

    let baton = Baton::start_in(&data, &[]);
    let mut conn = baton.connect().await;
    let mut stored = BTreeMap::new();
    let mut offset = 0;
    loop {
        let r = conn
            .send(&fetch_request("crash", 0, offset, 0), 12)
            .await
            .unwrap();
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            break;
        }
        for (header, range) in split_batches(&records, 1 << 20).unwrap() {
            stored.insert(header.base_offset, records[range].to_vec());
            offset = header.next_offset();
        }
    }
    assert!(acked.len() >= 500);
    for (offset, value) in &acked {
        let batch = stored
            .get(offset)
            .unwrap_or_else(|| panic!("acknowledged offset {offset} lost"));
        assert!(
            batch.windows(value.len()).any(|w| w == value.as_slice()),
            "offset {offset} holds another record"
        );
    }
    let offsets: Vec<i64> = stored.keys().copied().collect();
    assert_eq!(
        offsets,
        (0..offsets.len() as i64).collect::<Vec<_>>(),
        "offsets contiguous from 0"
    );
}
