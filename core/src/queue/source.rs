//! Sources of message bytes, pulled a chunk at a time: a queued message
//! (delivery, bounces), a byte slice, any async reader (standard input).

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::deliver::MessageRef;
use crate::env::{Fs, FsFile, OpenOptions};

/// Size of the chunks messages are copied in.
pub const CHUNK: usize = 64 * 1024;

/// Something message bytes can be pulled from, a chunk at a time.
pub trait ByteSource: Send {
    /// Fills the start of `buf`; 0 means the end.
    fn read_chunk(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The message of a [`MessageRef`], read front to back.
pub struct MessageReader<F: FsFile> {
    file: F,
    left: u64,
}

impl<F: FsFile> MessageReader<F> {
    /// Opens the queue file and positions it at the message.
    pub async fn open<S: Fs<File = F>>(fs: &S, msg: &MessageRef) -> io::Result<Self> {
        let mut file = fs.open(&msg.path, &OpenOptions::read()).await?;
        file.seek(msg.offset).await?;
        Ok(MessageReader {
            file,
            left: msg.len,
        })
    }
}

impl<F: FsFile> ByteSource for MessageReader<F> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "queue file shorter than its message",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A byte slice as a [`ByteSource`] (tests, small messages).
pub struct SliceSource<'a>(pub &'a [u8]);

impl ByteSource for SliceSource<'_> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Any async reader (qmail-queue's standard input) as a [`ByteSource`].
pub struct ReadSource<R>(pub R);

impl<R: AsyncRead + Unpin + Send> ByteSource for ReadSource<R> {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).await
    }
}
