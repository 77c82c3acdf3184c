//! A stream adapter that caps a request's header bytes (`limits.max_request_header_bytes`).
//!
//! Why here: pingora's HTTP/1 reader lets request headers grow to 1 MiB (`MAX_HEADER_SIZE`,
//! a const) and has no knob; 100 connections growing headers took 100 MiB. Between requests
//! (no request in flight) every byte read is header bytes of the next request, so the adapter
//! counts them and hands pingora at most the cap: once it is reached without the headers
//! having been parsed (the proxy marks that through `connections::mark_headers_read`), it
//! writes a `431` page naming the failure code and asks the guard to close the connection.
//! It also starts the header deadline at a kept-alive request's first byte. While a request
//! is served (its body) reads pass through untouched.
//!
//! Reads are shortened to what is left of the cap, so pingora's header buffer never holds
//! more than the cap (its capacity at most twice that, from `BytesMut` doubling).

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn_registry::{CloseReason, ConnState};
use super::guard_core::GuardCore;
use crate::errors::{BrowserError, FailureCode};
use crate::protocol::InteractionId;

pub struct HeaderLimited {
    inner: Stream,
    state: Arc<ConnState>,
    core: Arc<GuardCore>,
    /// Set once the cap was hit: reads stay pending until the guard drops the connection.
    refused: bool,
}

impl HeaderLimited {
    pub fn new(inner: Stream, state: Arc<ConnState>, core: Arc<GuardCore>) -> Self {
        HeaderLimited {
            inner,
            state,
            core,
            refused: false,
        }
    }

    /// Best effort (one non-blocking write): the socket is closed right after.
    fn refuse(&mut self, cx: &mut Context<'_>) {
        self.refused = true;
        let id = InteractionId::new();
        let (content_type, body) = BrowserError::uncounted(FailureCode::RequestHeadersTooLarge, id).render(false);
        let mut page = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\
             x-fapi-interaction-id: {id}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        page.extend_from_slice(&body);
        let _ = Pin::new(&mut *self.inner).poll_write(cx, &page);
        let _ = Pin::new(&mut *self.inner).poll_flush(cx);
        self.core.headers_too_large(id);
        self.state.close(CloseReason::HeadersTooLarge);
    }
}

impl std::fmt::Debug for HeaderLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderLimited").field("inner", &self.inner).finish()
    }
}

impl AsyncRead for HeaderLimited {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.state.in_flight() {
            return Pin::new(&mut *self.inner).poll_read(cx, buf);
        }
        if self.refused {
            return Poll::Pending;
        }
        let used = self.state.header_bytes.load(Ordering::Acquire);
        let allow = self.core.max_header_bytes.saturating_sub(used);
        if allow == 0 {
            self.refuse(cx);
            return Poll::Pending;
        }
        // As tokio's `Take` does: read into a shortened view, then account it in `buf`.
        let mut short = buf.take(allow);
        let before = short.filled().as_ptr();
        let res = Pin::new(&mut *self.inner).poll_read(cx, &mut short);
        let n = short.filled().len();
        debug_assert_eq!(before, short.filled().as_ptr());
        if let Poll::Ready(Ok(())) = res {
            // SAFETY: the inner reader initialised and filled these `n` bytes of `buf`'s
            // unfilled part (the view shares its memory).
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            if n > 0 {
                self.state.header_bytes.fetch_add(n, Ordering::AcqRel);
                self.state.header_bytes_read();
            }
        }
        res
    }
}

impl AsyncWrite for HeaderLimited {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeaderLimited {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderLimited {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderLimited {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderLimited {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeaderLimited {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeaderLimited {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeaderLimited {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
