//! Property: any bytes after a valid header prefix, for every advertised
//! API and version, give a response or a close, never a panic or an abort.
//! Runs `dispatch::handle` in-process, with the same allocator as `baton`,
//! on a broker that has no controller (and so an empty metadata image).

use broker::dispatch::{self, Outcome};
use broker::{Broker, Settings};
use proptest::prelude::*;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: Some(dir.path().join("data")),
        ..Settings::default()
    };
    let config = settings.resolve().unwrap();
    // No controller: the image stays empty, so every topic change is refused
    // by the broker's own checks before anything would be forwarded.
    let session = controller::broker_session::BrokerSession::new(
        1,
        "127.0.0.1:1".into(),
        vec![],
        config.lease,
    );
    let broker = Broker::open(config, session).unwrap();
    (dir, broker)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn random_request_bodies_never_panic(
        which in 0..broker::versions::SUPPORTED.len(),
        pick_max in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (_dir, broker) = broker();
        let (api, min, max) = broker::versions::SUPPORTED[which];
        let version = if pick_max { max } else { min };
        let mut frame = Vec::new();
        frame.extend_from_slice(&(api as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&body);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = runtime.block_on(dispatch::handle(&broker, frame.into(), "127.0.0.1"));
        prop_assert!(matches!(outcome, Outcome::Respond(_) | Outcome::Close(_) | Outcome::Silent));
    }
}
