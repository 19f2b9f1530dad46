//! Kafka request framing: a 4-byte big-endian size, then that many bytes.
//! The size is checked against `socket.request.max.bytes` before anything is
//! allocated for the body.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read; the connection is closed after any.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    Negative(i32),
    /// The size prefix exceeds the limit.
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge {
        /// Announced size.
        size: i32,
        /// The limit.
        max: u32,
    },
    /// The connection closed in the middle of a frame.
    #[error("connection closed {0} bytes into a frame")]
    Truncated(usize),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Checks a size prefix: the body length to read.
pub fn body_len(size: i32, max: u32) -> Result<usize, FrameError> {
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    if size as u32 > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size as usize)
}

/// Reads one frame; `None` when the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated(got))
            };
        }
        got += n;
    }
    let len = body_len(i32::from_be_bytes(prefix), max)?;
    // Read into spare capacity: zeroing a buffer the socket fills anyway
    // costs a pass over every produced and replicated byte.
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let rest = (len - body.len()) as u64;
        let n = (&mut *reader).take(rest).read_buf(&mut body).await?;
        if n == 0 {
            return Err(FrameError::Truncated(4 + body.len()));
        }
    }
    Ok(Some(body.freeze()))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let len =
        i32::try_from(body.len()).map_err(|_| std::io::Error::other("response over 2 GiB"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_prefix_rules() {
        assert_eq!(body_len(0, 100).unwrap(), 0);
        assert_eq!(body_len(100, 100).unwrap(), 100);
        assert!(matches!(
            body_len(101, 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(body_len(-1, 100), Err(FrameError::Negative(-1))));
        assert!(matches!(
            body_len(i32::MIN, 100),
            Err(FrameError::Negative(_))
        ));
    }

    #[tokio::test]
    async fn frames_round_trip_and_truncation_is_reported() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").await.unwrap();
        let mut reader = &wire[..];
        assert_eq!(
            read_frame(&mut reader, 100).await.unwrap().unwrap(),
            &b"hello"[..]
        );
        assert!(read_frame(&mut reader, 100).await.unwrap().is_none());
        let mut cut = &wire[..6];
        assert!(matches!(
            read_frame(&mut cut, 100).await,
            Err(FrameError::Truncated(6))
        ));
        let mut cut = &wire[..2];
        assert!(matches!(
            read_frame(&mut cut, 100).await,
            Err(FrameError::Truncated(2))
        ));
    }
}
