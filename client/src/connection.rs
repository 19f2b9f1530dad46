//! One TCP connection to a broker: typed requests at a chosen API version,
//! matched to their responses by correlation id.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Largest response this client accepts (a Fetch can be large).
const RESPONSE_MAX_BYTES: usize = 256 << 20;

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or closed.
    #[error("connection to {addr}: {source}")]
    Io {
        /// Broker address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// Bytes that are not the expected Kafka message.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error} (code {code})", code = error.code())]
    Kafka {
        /// What was asked.
        context: String,
        /// The error.
        error: kafka_protocol::ResponseError,
    },
    /// Retries ran out.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// The Kafka error code behind this error, looking through retries.
    pub fn kafka_error(&self) -> Option<kafka_protocol::ResponseError> {
        match self {
            ClientError::Kafka { error, .. } => Some(*error),
            ClientError::Exhausted { last, .. } => last.kafka_error(),
            ClientError::Io { .. } | ClientError::Protocol(_) => None,
        }
    }

    /// `Ok` for error code 0, else the Kafka error with `context` (and the
    /// broker's message, when it sent one).
    pub fn check(
        code: i16,
        context: impl FnOnce() -> String,
        message: Option<&StrBytes>,
    ) -> Result<(), ClientError> {
        match kafka_protocol::ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(error) => {
                let context = match message.filter(|m| !m.is_empty()) {
                    Some(m) => format!("{}: {m}", context()),
                    None => context(),
                };
                Err(ClientError::Kafka { context, error })
            }
        }
    }
}

impl Clone for ClientError {
    /// I/O errors are not `Clone`: the copy keeps their kind and message.
    fn clone(&self) -> Self {
        match self {
            ClientError::Io { addr, source } => ClientError::Io {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
            ClientError::Kafka { context, error } => ClientError::Kafka {
                context: context.clone(),
                error: *error,
            },
            ClientError::Exhausted { attempts, last } => ClientError::Exhausted {
                attempts: *attempts,
                last: last.clone(),
            },
        }
    }
}

/// A connection to one broker.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: BufStream<TcpStream>,
    correlation_id: i32,
    client_id: StrBytes,
}

/// How long a TCP connect may take (Kafka's
/// `socket.connection.setup.timeout.ms`, shorter: brokers are on a LAN).
/// A broker whose host vanished (a killed container) answers nothing at
/// all; without a bound the connect waits for ARP to give up, seconds.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Connection {
    /// Connects to `addr` (`host:port`), within [`CONNECT_TIMEOUT`].
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(Connection {
            addr: addr.to_string(),
            stream: BufStream::new(stream),
            correlation_id: 0,
            client_id: StrBytes::from_static_str("baton-client"),
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the broker closed this connection (or it failed) while it
    /// was idle: a request sent on it would be lost, and the sender could
    /// not tell whether it was applied. Does not wait. Only for a
    /// connection with no response outstanding.
    pub fn peer_closed(&self) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.stream.get_ref().poll_peek(&mut cx, &mut buf) {
            std::task::Poll::Ready(Ok(n)) => n == 0,
            std::task::Poll::Ready(Err(_)) => true,
            std::task::Poll::Pending => false,
        }
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.send_request(request, version).await?;
        self.receive::<R>(version, correlation_id).await
    }

    /// Writes `request` without waiting for the response (pipelining);
    /// returns its correlation id. Responses come back in request order.
    pub async fn send_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        self.write_frame(&body).await?;
        Ok(self.correlation_id)
    }

    /// Reads the response to the request sent with `correlation_id`.
    pub async fn receive<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, ClientError> {
        let mut response = self
            .read_frame()
            .await?
            .ok_or_else(|| self.io(std::io::ErrorKind::UnexpectedEof.into()))?;
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(format!("bad response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} where {correlation_id} was expected",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut response, version)
            .map_err(|e| ClientError::Protocol(format!("bad response: {e}")))
    }

    /// Sends a Produce with acks=0: no response comes back.
    pub async fn send_no_response<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.send_request(request, version).await.map(drop)
    }

    async fn write_frame(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let len = (body.len() as i32).to_be_bytes();
        let written = async {
            self.stream.write_all(&len).await?;
            self.stream.write_all(body).await?;
            self.stream.flush().await
        }
        .await;
        written.map_err(|e| self.io(e))
    }

    /// Writes raw bytes (a whole frame, size prefix included, or anything
    /// else) and returns the next response frame, `None` if the broker
    /// closed the connection. For tests of bad input.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<Option<Bytes>, ClientError> {
        let written = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        }
        .await;
        written.map_err(|e| self.io(e))?;
        self.read_frame().await
    }

    async fn read_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(self.io(e)),
        }
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > RESPONSE_MAX_BYTES {
            return Err(ClientError::Protocol(format!(
                "response frame of {len} bytes"
            )));
        }
        let mut buf = BytesMut::zeroed(len as usize);
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.io(e))?;
        Ok(Some(buf.freeze()))
    }
}
