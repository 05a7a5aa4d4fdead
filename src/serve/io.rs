//! A socket wrapper that fails writes which make no progress for too long.
//!
//! hyper bounds how long a client may take to *send* a request head, but a client that sends
//! requests and never *reads* the responses would hold its connection (and one of the capped
//! connection slots) forever once the socket buffers are full. Wrapping the TCP stream (below
//! TLS, so handshakes are covered too) turns such a stall into an I/O error that ends the
//! connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with a stall timeout on writes: the clock starts when a write first returns
/// `Pending` and is cleared by any progress.
pub(super) struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> WriteTimeout<T> {
    pub(super) fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// Called when the inner write is `Pending`: starts the clock if needed and reports
    /// whether it has run out (registering the waker with the timer either way).
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.timeout;
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer stopped reading (write stalled)",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn track<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.poll_stalled(cx).map(Err),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.track(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[test]
    fn stalled_write_times_out_and_progress_does_not() {
        // A paused clock: it advances only when every task waits, so the reader's 5 ms naps
        // are 5 ms against the 50 ms timeout however loaded the machine is.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            // A 64-byte pipe nobody reads: the second write stalls.
            let (client, _server) = tokio::io::duplex(64);
            let mut w = WriteTimeout::new(client, Duration::from_millis(50));
            w.write_all(&[0; 64]).await.unwrap();
            let err = w.write_all(&[0; 1]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);

            // A reader that keeps up: no timeout however long it takes overall.
            let (client, mut server) = tokio::io::duplex(64);
            let mut w = WriteTimeout::new(client, Duration::from_millis(50));
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let mut total = 0;
                while total < 1024 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let n = tokio::io::AsyncReadExt::read(&mut server, &mut buf)
                        .await
                        .unwrap();
                    total += n;
                }
            });
            w.write_all(&[1; 1024]).await.unwrap();
            reader.await.unwrap();
        });
    }
}
