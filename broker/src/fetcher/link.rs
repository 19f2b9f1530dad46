//! A fetcher's connection to its source broker, pipelined: requests are
//! written in order, and a task of its own reads the responses, so the
//! fetcher can wait for the next response and for a sync at once (waiting
//! on the channel loses nothing when the other finishes first; a read cut
//! off mid-frame would lose the stream).

use crate::frame;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::VecDeque;
use tokio::io::BufWriter;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The largest response frame a fetcher accepts: a Fetch response is at
/// most its `max_bytes` (10 MiB) plus framing, and KIP-74 lets one batch
/// exceed that.
const RESPONSE_MAX: u32 = 256 << 20;

/// Requests a fetcher keeps in flight at most: a fetch and a position
/// report behind it, plus slack.
const IN_FLIGHT_MAX: usize = 4;

/// A pipelined connection.
pub struct Link {
    write: BufWriter<OwnedWriteHalf>,
    responses: mpsc::Receiver<Result<Bytes, String>>,
    reader: tokio::task::JoinHandle<()>,
    correlation_id: i32,
    /// Correlation ids of the requests sent and not yet answered, in order.
    in_flight: VecDeque<i32>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Connects to `addr` within the client's connect timeout.
    pub async fn connect(addr: &str) -> anyhow::Result<Link> {
        let stream = tokio::time::timeout(
            client::connection::CONNECT_TIMEOUT,
            TcpStream::connect(addr),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connect to {addr} timed out"))??;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (tx, responses) = mpsc::channel(IN_FLIGHT_MAX);
        let reader = tokio::spawn(async move {
            let mut read = tokio::io::BufReader::new(read);
            loop {
                let frame = match frame::read_frame(&mut read, RESPONSE_MAX).await {
                    Ok(Some(frame)) => Ok(frame),
                    Ok(None) => Err("connection closed".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let failed = frame.is_err();
                if tx.send(frame).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Link {
            write: BufWriter::new(write),
            responses,
            reader,
            correlation_id: 0,
            in_flight: VecDeque::new(),
        })
    }

    /// Writes `request` at `version` without waiting for its response.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<()> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("baton-replica-fetcher")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        frame::write_frame(&mut self.write, &body).await?;
        self.in_flight.push_back(self.correlation_id);
        Ok(())
    }

    /// The next response, which answers the oldest request in flight (sent
    /// as `R` at `version`). Cancel-safe.
    pub async fn receive<R: Request>(&mut self, version: i16) -> anyhow::Result<R::Response> {
        let mut frame = self
            .responses
            .recv()
            .await
            .unwrap_or_else(|| Err("connection closed".to_string()))
            .map_err(anyhow::Error::msg)?;
        let expected = self
            .in_flight
            .pop_front()
            .ok_or_else(|| anyhow::anyhow!("a response to no request"))?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
        anyhow::ensure!(
            header.correlation_id == expected,
            "correlation id {} where {expected} was expected",
            header.correlation_id
        );
        R::Response::decode(&mut frame, version)
    }

    /// Sends `request` and waits for its response (nothing else in flight).
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        anyhow::ensure!(
            self.in_flight.is_empty(),
            "a call behind pipelined requests"
        );
        self.send(request, version).await?;
        self.receive::<R>(version).await
    }
}
