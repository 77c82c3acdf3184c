//! Tests of the connection guard over real loopback sockets.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A stand-in app serving keep-alive requests as the proxy does: reads until
/// "\r\n\r\n", marks the headers read, answers "ok" and marks the request done. A
/// request for `/hold` stays in flight (reading, as a body) until the client closes.
struct Echo;

#[async_trait]
impl ServerApp for Echo {
    async fn process_new(self: &Arc<Self>, mut s: Stream, _shutdown: &ShutdownWatch) -> Option<Stream> {
        let mut b = [0u8; 64];
        loop {
            let mut buf = Vec::new();
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            mark_headers_read();
            if buf.starts_with(b"GET /hold") {
                while let Ok(1..) = s.read(&mut b).await {}
                return None;
            }
            s.write_all(b"ok").await.ok()?;
            s.flush().await.ok()?;
            mark_request_done();
        }
    }
}

fn metrics() -> GuardMetrics {
    GuardMetrics {
        refused: IntCounter::new("r", "r").unwrap(),
        open: IntGauge::new("o", "o").unwrap(),
        header_timeouts: IntCounter::new("t", "t").unwrap(),
        evicted: IntCounter::new("e", "e").unwrap(),
        headers_too_large: IntCounter::new("l", "l").unwrap(),
    }
}

fn limits(max: usize, timeout_ms: u64) -> GuardLimits {
    GuardLimits {
        listener: "test",
        max_connections: max,
        pressure_percent: 100,
        header_timeout: Duration::from_millis(timeout_ms),
        max_header_bytes: 1024,
    }
}

fn bare_guard(max: usize, timeout_ms: u64) -> ConnectionGuard<Echo> {
    ConnectionGuard::new(Echo, limits(max, timeout_ms), metrics())
}

impl<A> ConnectionGuard<A> {
    fn m(&self) -> &GuardMetrics {
        &self.core.metrics
    }
}

fn guard(max: usize, timeout_ms: u64) -> Arc<ConnectionGuard<Echo>> {
    Arc::new(bare_guard(max, timeout_ms))
}

/// A connected client and the server side, with the peer address in the socket digest
/// as pingora's listener sets it.
async fn pair() -> (tokio::net::TcpStream, Stream) {
    use pingora::protocols::{GetSocketDigest, SocketDigest};
    use std::os::fd::AsRawFd;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut s = pingora::protocols::l4::stream::Stream::from(s);
    s.set_socket_digest(SocketDigest::from_raw_fd(s.as_raw_fd()));
    (c, Box::new(s))
}

#[tokio::test]
async fn refuses_beyond_the_cap_when_every_slot_is_busy_and_frees_slots_on_close() {
    let g = guard(1, 5_000);
    let (_w, shutdown) = tokio::sync::watch::channel(false);
    let (mut c1, s1) = pair().await;
    let g1 = g.clone();
    let sd = shutdown.clone();
    let first = tokio::spawn(async move { g1.process_new(s1, &sd).await });
    c1.write_all(b"GET /hold HTTP/1.1\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(g.open(), 1);

    // Over the cap with the only slot's request in flight: closed without a byte read or
    // written.
    let (mut c2, s2) = pair().await;
    assert!(g.process_new(s2, &shutdown).await.is_none());
    assert_eq!(g.m().refused.get(), 1);
    let mut rest = Vec::new();
    assert_eq!(c2.read_to_end(&mut rest).await.unwrap_or(0), 0);

    drop(c1);
    first.await.unwrap();
    assert_eq!(g.open(), 0);
    assert_eq!(g.m().open.get(), 0);
}

#[tokio::test]
async fn one_peer_address_is_capped_at_accept() {
    let clients = ClientConnections::new(1);
    let g = Arc::new(bare_guard(0, 5_000).per_client(clients.clone(), IntCounter::new("c", "c").unwrap()));
    let (_w, shutdown) = tokio::sync::watch::channel(false);
    let (mut c1, s1) = pair().await;
    let (g1, sd) = (g.clone(), shutdown.clone());
    let first = tokio::spawn(async move { g1.process_new(s1, &sd).await });
    c1.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut b = [0u8; 2];
    c1.read_exact(&mut b).await.unwrap();
    assert_eq!(clients.held("127.0.0.1".parse().unwrap()), 1);

    // A second connection from the same address: closed at once, global slot given back.
    let (mut c2, s2) = pair().await;
    assert!(g.process_new(s2, &shutdown).await.is_none());
    assert_eq!(g.per_client.as_ref().unwrap().1.get(), 1);
    assert_eq!(g.open(), 1);
    let mut rest = Vec::new();
    assert_eq!(c2.read_to_end(&mut rest).await.unwrap_or(0), 0);

    // Once the first closes, the address may connect again.
    drop(c1);
    first.await.unwrap();
    assert_eq!(clients.held("127.0.0.1".parse().unwrap()), 0);
    let (mut c3, s3) = pair().await;
    let (g3, sd) = (g.clone(), shutdown.clone());
    let third = tokio::spawn(async move { g3.process_new(s3, &sd).await });
    c3.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    c3.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ok");
    drop(c3);
    third.await.unwrap();
}

#[tokio::test]
async fn a_trickled_first_request_is_cut_at_the_total_deadline() {
    let g = guard(0, 300);
    let (_w, shutdown) = tokio::sync::watch::channel(false);
    let (mut c, s) = pair().await;
    let g1 = g.clone();
    let sd = shutdown.clone();
    let served = tokio::spawn(async move { g1.process_new(s, &sd).await });
    // One byte every 100 ms: each read is quick, the headers never complete in time.
    for b in b"GET / HTTP/1.1\r\nX: y" {
        if c.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if served.is_finished() {
            break;
        }
    }
    served.await.unwrap();
    assert_eq!(g.m().header_timeouts.get(), 1);
    assert_eq!(g.open(), 0);
}

#[tokio::test]
async fn the_deadline_does_not_cut_a_connection_whose_headers_arrived() {
    let g = guard(0, 200);
    let (_w, shutdown) = tokio::sync::watch::channel(false);
    let (mut c, s) = pair().await;
    let g1 = g.clone();
    let sd = shutdown.clone();
    let served = tokio::spawn(async move { g1.process_new(s, &sd).await });
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut b = [0u8; 2];
    c.read_exact(&mut b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !served.is_finished(),
        "a served connection outlives the header deadline"
    );
    drop(c);
    served.await.unwrap();
    assert_eq!(g.m().header_timeouts.get(), 0);
}

/// Serves `s` on `g` in a task.
fn serve(g: &Arc<ConnectionGuard<Echo>>, s: Stream) -> tokio::task::JoinHandle<Option<Stream>> {
    let g = g.clone();
    tokio::spawn(async move {
        let (_w, shutdown) = tokio::sync::watch::channel(false);
        g.process_new(s, &shutdown).await
    })
}

async fn request_ok(c: &mut tokio::net::TcpStream) {
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut b = [0u8; 2];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ok");
}

/// The socket was closed by the server (EOF or reset), within 2 s.
async fn closed(c: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the connection was closed");
    rest
}

#[tokio::test]
async fn at_the_cap_an_idle_connection_is_closed_for_a_new_one() {
    let g = guard(1, 5_000);
    let (mut c1, s1) = pair().await;
    let first = serve(&g, s1);
    request_ok(&mut c1).await;
    // c1 is idle between requests: a new client takes its slot instead of being refused.
    let (mut c2, s2) = pair().await;
    let second = serve(&g, s2);
    request_ok(&mut c2).await;
    closed(&mut c1).await;
    first.await.unwrap();
    assert_eq!(g.m().evicted.get(), 1);
    assert_eq!(g.m().refused.get(), 0);
    assert_eq!(g.open(), 1);
    drop(c2);
    second.await.unwrap();
    assert_eq!(g.m().open.get(), 0);
}

#[tokio::test]
async fn trickling_connections_cannot_hold_every_slot() {
    // The reproduction: every slot trickles headers; a new client is served at once.
    let g = guard(3, 30_000);
    let mut tricklers = Vec::new();
    for _ in 0..3 {
        let (mut c, s) = pair().await;
        tricklers.push((serve(&g, s), {
            c.write_all(b"GET / HTTP/1.1\r\nX-Slow: a").await.unwrap();
            c
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut c, s) = pair().await;
    let served = serve(&g, s);
    request_ok(&mut c).await;
    closed(&mut tricklers[0].1).await;
    assert_eq!(g.m().evicted.get(), 1);
    drop(c);
    served.await.unwrap();
}

#[tokio::test]
async fn a_trickled_second_request_is_cut_at_the_total_deadline() {
    let g = guard(0, 300);
    let (mut c, s) = pair().await;
    let served = serve(&g, s);
    request_ok(&mut c).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !served.is_finished(),
        "an idle keep-alive is not cut by the header deadline"
    );
    for b in b"GET / HTTP/1.1\r\nX: y" {
        if c.write_all(&[*b]).await.is_err() || served.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    served.await.unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(g.m().header_timeouts.get(), 1);
}

#[tokio::test]
async fn every_request_may_take_the_whole_deadline() {
    // Three requests each sent slowly but within the deadline: the clock restarts per request.
    let g = guard(0, 400);
    let (mut c, s) = pair().await;
    let served = serve(&g, s);
    for _ in 0..3 {
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        request_ok(&mut c).await;
    }
    assert_eq!(g.m().header_timeouts.get(), 0);
    drop(c);
    served.await.unwrap();
}

#[tokio::test]
async fn growing_headers_of_a_later_request_get_431_and_a_close() {
    let g = guard(0, 5_000); // max_header_bytes 1024
    let (mut c, s) = pair().await;
    let served = serve(&g, s);
    request_ok(&mut c).await;
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(1500, b'a');
    let _ = c.write_all(&req).await;
    let page = closed(&mut c).await;
    served.await.unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 431"), "{page}");
    assert!(page.contains("request_headers_too_large"));
    assert_eq!(g.m().headers_too_large.get(), 1);
}

#[tokio::test]
async fn headers_up_to_the_cap_and_bodies_of_any_size_pass() {
    let g = guard(0, 5_000);
    let (mut c, s) = pair().await;
    let served = serve(&g, s);
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(1020, b'a');
    req.extend_from_slice(b"\r\n\r\n");
    assert_eq!(req.len(), 1024);
    c.write_all(&req).await.unwrap();
    let mut b = [0u8; 2];
    c.read_exact(&mut b).await.unwrap();
    // A request in flight reads its body uncounted.
    c.write_all(b"GET /hold HTTP/1.1\r\n\r\n").await.unwrap();
    c.write_all(&[b'x'; 8192]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!served.is_finished());
    assert_eq!(g.m().headers_too_large.get(), 0);
    drop(c);
    served.await.unwrap();
}

/// As `pair`, from a chosen loopback source address.
async fn pair_from(src: &str) -> (tokio::net::TcpStream, Stream) {
    use pingora::protocols::{GetSocketDigest, SocketDigest};
    use std::os::fd::AsRawFd;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let c = sock.connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let mut s = pingora::protocols::l4::stream::Stream::from(s);
    s.set_socket_digest(SocketDigest::from_raw_fd(s.as_raw_fd()));
    (c, Box::new(s))
}

#[tokio::test]
async fn under_pressure_one_address_cannot_take_the_last_slots() {
    // Cap 10, pressure from 8 (80 %): one address holds 8 busy slots. Another address still
    // gets in; the flooder's ninth is refused (over its share of 10 / 2, nothing idle).
    let g = Arc::new(ConnectionGuard::new(
        Echo,
        GuardLimits {
            pressure_percent: 80,
            ..limits(10, 5_000)
        },
        metrics(),
    ));
    let mut held = Vec::new();
    for _ in 0..8 {
        let (mut c, s) = pair_from("127.0.0.2").await;
        let t = serve(&g, s);
        c.write_all(b"GET /hold HTTP/1.1\r\n\r\n").await.unwrap();
        held.push((t, c));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut user, s) = pair_from("127.0.0.3").await;
    let served = serve(&g, s);
    request_ok(&mut user).await;
    let (mut c, s) = pair_from("127.0.0.2").await;
    serve(&g, s).await.unwrap();
    closed(&mut c).await;
    assert_eq!(g.m().refused.get(), 1);
    assert_eq!(g.m().evicted.get(), 0, "nothing in flight is cut");
    drop(user);
    served.await.unwrap();
}
