//! The HTTP edge: how connections are taken and requests bounded before a
//! handler sees them. Our own accept loop gives each connection a
//! header-read timeout (a slowloris client that never finishes its
//! headers is cut off) under a cap on open connections; layers give each
//! request a deadline and cap the requests in flight, answering 503 beyond
//! it rather than queueing without end. Long polls are left out of both.

use super::problem::{Problem, ProblemCode};
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tracing::{debug, warn};

/// Bounds of the HTTP edge (`[api]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// A connection must send a request's headers within this.
    pub header_read_timeout: Duration,
    /// A request (its body read and its answer made) must end within this.
    pub request_timeout: Duration,
    /// Requests handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 1024,
            max_connections: 10_000,
        }
    }
}

/// `router` with the request bounds of `limits` on every route (one cap
/// for all of them: a layer on a router is copied to each route).
pub fn bounded<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: &EdgeLimits,
) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(over_bounds))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                limits.max_in_flight.max(1),
            ))
            .timeout(limits.request_timeout),
    )
}

/// The answer to a request the bounds stopped.
async fn over_bounds(e: BoxError) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        Problem::new(
            ProblemCode::RequestTimeout,
            "the request was not completed in time",
        )
        .into_response()
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        Problem::unavailable("too many requests in progress; try again shortly", 1).into_response()
    } else {
        Problem::internal(&e).into_response()
    }
}

/// Serves `app` on `listener` until `stop`, then lets open requests finish.
/// Each connection gets `limits.header_read_timeout` to send its headers,
/// and the handlers see its peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: EdgeLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not a busy loop.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Answers go out as written: with Nagle's algorithm a response
        // split in two writes waits for the client's delayed ACK (~40 ms).
        if let Err(e) = sock.set_nodelay(true) {
            debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                },
            );
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let conn = http.serve_connection(TokioIo::new(sock), svc);
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    conns.close();
    conns.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(app: Router, limits: EdgeLimits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, stop.clone()));
        (addr, stop)
    }

    fn limits() -> EdgeLimits {
        EdgeLimits {
            header_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            max_in_flight: 1,
            max_connections: 100,
        }
    }

    async fn read_all(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn a_slowloris_client_is_cut_off_and_others_are_served() {
        let app = Router::new().route("/healthz", get(|| async { "ok" }));
        let (addr, stop) = start(app, limits()).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        // One header byte every 100 ms, never the blank line that ends them.
        let drip = async {
            for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if slow.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        let cut_while_dripping = tokio::time::timeout(Duration::from_secs(10), drip)
            .await
            .expect("the drip ends");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(
            cut_while_dripping || matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "the connection was not closed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut off after {:?}",
            started.elapsed()
        );
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "the slow request was served"
        );
        // A normal client is served meanwhile and after.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut ok).await.starts_with("HTTP/1.1 200"));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_or_over_the_in_flight_cap_is_refused() {
        let app = bounded(
            Router::new()
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        "late"
                    }),
                )
                .route("/fast", get(|| async { "ok" }))
                .route(
                    "/echo",
                    axum::routing::post(|body: String| async move { body }),
                ),
            &limits(),
        );
        let (addr, stop) = start(app, limits()).await;
        let get_path = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            read_all(&mut s).await
        };
        // One slow request holds the only slot; another meanwhile gets 503.
        let slow = tokio::spawn(get_path("/slow"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = get_path("/fast").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("service_unavailable"), "{refused}");
        assert!(
            refused.to_ascii_lowercase().contains("retry-after: 1"),
            "{refused}"
        );
        // The slow one is stopped at its deadline.
        let late = slow.await.unwrap();
        assert!(late.starts_with("HTTP/1.1 408"), "{late}");
        assert!(late.contains("request_timeout"), "{late}");
        // With the slot free again, requests are served.
        assert!(get_path("/fast").await.starts_with("HTTP/1.1 200"));
        // A body that trickles in is cut at the deadline too.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            .await
            .unwrap();
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        stop.cancel();
    }
}
