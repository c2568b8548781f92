//! The accept loop's guards, before HTTP is even parsed: a per-IP budget of TCP connections
//! (a slow-upgrade attacker holds sockets that never reach the WebSocket budget), a deadline
//! for the first request's headers (slowloris), and descriptor headroom (stop accepting before
//! the process runs out of file descriptors, instead of failing on `EMFILE` in a hot loop and
//! starving the store, Redis and the knowledge base of descriptors).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::telemetry::metric;

/// Descriptors kept free for everything that is not a client socket.
const FD_HEADROOM: usize = 256;

/// Open TCP connections, per address and in all.
#[derive(Default)]
struct Budget {
    per_ip: DashMap<IpAddr, u32>,
    open: AtomicUsize,
}

impl Budget {
    fn release(&self, ip: IpAddr) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.per_ip.remove_if_mut(&ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

pub struct GuardedListener {
    inner: TcpListener,
    budget: Arc<Budget>,
    max_per_ip: u32,
    max_open: usize,
    header_timeout: Duration,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, max_per_ip: u32, header_timeout: Duration) -> Self {
        let max_open = open_files_limit()
            .map(|limit| limit.saturating_sub(FD_HEADROOM).max(16))
            .unwrap_or(usize::MAX);
        Self {
            inner,
            budget: Arc::new(Budget::default()),
            max_per_ip,
            max_open,
            header_timeout,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if self.budget.open.load(Ordering::Relaxed) >= self.max_open {
                // Leave new connections in the kernel's backlog until some close.
                metrics::counter!(metric::ACCEPT_PAUSED_TOTAL, "reason" => "fd_headroom")
                    .increment(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let (tcp, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            };
            let ip = addr.ip();
            {
                let mut n = self.budget.per_ip.entry(ip).or_insert(0);
                if *n >= self.max_per_ip {
                    metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "tcp_per_ip")
                        .increment(1);
                    continue; // dropping `tcp` closes it
                }
                *n += 1;
            }
            self.budget.open.fetch_add(1, Ordering::Relaxed);
            let stream = GuardedStream {
                tcp,
                ip,
                budget: self.budget.clone(),
                header_deadline: (!self.header_timeout.is_zero())
                    .then(|| Box::pin(tokio::time::sleep(self.header_timeout))),
                tail: [0; 3],
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

async fn accept_error(err: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    // EMFILE / ENFILE and the like: back off instead of spinning on the error.
    metrics::counter!(metric::ACCEPT_ERRORS_TOTAL).increment(1);
    tracing::warn!(error = %err, "accept failed; backing off");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `Max open files` of this process, from `/proc/self/limits` (Linux; `None` elsewhere).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A client TCP connection: returns its budget when dropped; until the first request's headers
/// are complete, reads fail after the header deadline (hyper then closes the connection).
pub struct GuardedStream {
    tcp: TcpStream,
    ip: IpAddr,
    budget: Arc<Budget>,
    header_deadline: Option<Pin<Box<Sleep>>>,
    /// The last bytes read, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
}

impl GuardedStream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nodelay(on)
    }
}

/// Whether `\r\n\r\n` ends within `read`, joined to the previous bytes (`tail`, updated).
fn headers_done(tail: &mut [u8; 3], read: &[u8]) -> bool {
    let mut joined = Vec::with_capacity(3 + read.len());
    joined.extend_from_slice(tail);
    joined.extend_from_slice(read);
    let n = joined.len();
    tail.copy_from_slice(&joined[n - 3..]);
    joined.windows(4).any(|w| w == b"\r\n\r\n")
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.budget.release(self.ip);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.header_deadline.is_some() {
            if let Poll::Ready(Ok(())) = &polled {
                let read = buf.filled()[before..].to_vec();
                if headers_done(&mut self.tail, &read) {
                    self.header_deadline = None;
                    return polled;
                }
            }
            if let Some(deadline) = self.header_deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    metrics::counter!(metric::CONNECTIONS_REJECTED_TOTAL, "reason" => "header_timeout")
                        .increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request headers not received in time",
                    )));
                }
            }
        }
        polled
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_headers_is_found_across_reads() {
        let mut tail = [0; 3];
        assert!(!headers_done(&mut tail, b"GET / HTTP/1.1\r\nHost: x\r\n\r"));
        assert!(headers_done(&mut tail, b"\n"));
        let mut tail = [0; 3];
        assert!(!headers_done(&mut tail, b"GET / HTTP/1.1\r\n"));
        assert!(headers_done(&mut tail, b"\r\n"));
    }
}
