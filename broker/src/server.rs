//! The Kafka listener: one task per connection, requests handled in order
//! (Kafka answers a connection's requests in the order they came), and a
//! maintenance task for timed flushes, retention and checkpoints.

use crate::dispatch::{self, Outcome, Prepared};
use crate::frame;
use crate::partition::Due;
use crate::state::Broker;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Serves until `shutdown` completes, then closes every log cleanly.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let maintenance = tokio::spawn(maintain(broker.clone()));
    let group_timer = tokio::spawn(crate::coordinator::run_timer(broker.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Err(reason) = connection(broker, stream).await {
                            tracing::info!(%peer, %reason, "connection closed");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            () = &mut shutdown => break,
        }
    }
    maintenance.abort();
    group_timer.abort();
    close_logs(&broker);
}

/// Requests of one connection whose responses may be pending at once.
const IN_FLIGHT_MAX: usize = 64;

/// Reads requests and lets each take effect in order; a writer task sends
/// the responses in the same order. Only a Produce's wait for its commit
/// and a follower's long poll overlap with later requests, so pipelined
/// produces share fdatasyncs and a follower's position report is not held
/// behind its own long-polling fetch.
async fn connection(broker: Arc<Broker>, stream: TcpStream) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (pending_tx, mut pending_rx) = mpsc::channel::<Prepared>(IN_FLIGHT_MAX);
    let writer = tokio::spawn(async move {
        let mut write = BufWriter::new(write);
        while let Some(prepared) = pending_rx.recv().await {
            let outcome = match prepared {
                Prepared::Now(outcome) => outcome,
                Prepared::Later(future) => future.await,
            };
            match outcome {
                Outcome::Respond(body) => frame::write_frame(&mut write, &body)
                    .await
                    .map_err(|e| e.to_string())?,
                Outcome::Silent => {}
                Outcome::Close(reason) => return Err(reason),
            }
        }
        Ok(())
    });
    let max = broker.config.socket_request_max_bytes;
    let read_result = loop {
        let request = match frame::read_frame(&mut read, max).await {
            Ok(Some(request)) => request,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        };
        let prepared = dispatch::prepare(&broker, request, &peer).await;
        let closing = matches!(prepared, Prepared::Now(Outcome::Close(_)));
        if pending_tx.send(prepared).await.is_err() || closing {
            break Ok(()); // the writer stopped (it reports why) or will close
        }
    };
    drop(pending_tx);
    let written = writer.await.map_err(|e| e.to_string())?;
    read_result.and(written)
}

/// Timed work: interval flushes (every 100 ms), high-watermark checkpoints
/// (every 5 s, Kafka's default), compaction (log.cleaner.backoff.ms),
/// retention (log.retention.check.interval.ms, 5 minutes) and idle
/// producers' expiry (producer.id.expiration.check.interval.ms, 10
/// minutes), all on a blocking thread; then ISR proposals.
async fn maintain(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ticks: u64 = 0;
    let every = |ms: u64| (ms / 100).max(1);
    // An interval below the 100 ms tick means every tick.
    let clean_every = every(broker.config.log_cleaner_backoff_ms);
    let expire_every = every(broker.config.producer_id_expiration_check_interval_ms);
    let retain_every = every(broker.config.log_retention_check_interval_ms);
    loop {
        tick.tick().await;
        ticks += 1;
        let due = Due {
            checkpoint: ticks % 50 == 0,
            retention: ticks % retain_every == 0,
            expire_producers: (ticks % expire_every == 0)
                .then_some(broker.config.producer_id_expiration_ms),
            clean: ticks % clean_every == 0,
        };
        let partitions = broker.all_partitions();
        let now = broker.wall_ms();
        let work = tokio::task::spawn_blocking(move || {
            for p in partitions {
                p.maintain(now, due);
            }
        });
        let _ = work.await;
        propose_isr_changes(&broker);
        if let Err(e) = broker.serve_windows.write(&broker.config.data_dir) {
            tracing::warn!(error = %e, "could not write the serve windows");
        }
    }
}

/// Sends the ISR changes the replication rules call for to the controller.
fn propose_isr_changes(broker: &Arc<Broker>) {
    let now = broker.now_ms();
    let image = broker.image();
    for p in broker.all_partitions() {
        if let Some((epoch, isr)) = p.propose_isr(now, |b| image.is_live(b)) {
            tokio::spawn(crate::controller_link::alter_isr(
                broker.clone(),
                p,
                epoch,
                isr,
            ));
        }
    }
}

fn close_logs(broker: &Broker) {
    let _ = broker.serve_windows.write(&broker.config.data_dir);
    for p in broker.all_partitions() {
        p.close();
    }
}
