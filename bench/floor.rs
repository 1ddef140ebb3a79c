//! The floor for rampart's plain proxying: the least an HTTP/1.1 reverse proxy built on the same
//! crates (hyper's server and client, tokio, mimalloc) does per request, to compare rampart's
//! instructions per request with (`bash bench/instructions.sh --floor`).
//!
//! Same shape as rampart: one thread per core, each with a current-thread runtime and its own
//! `SO_REUSEPORT` listener, and a per-thread pool of idle upstream connections. It sets
//! `X-Forwarded-For` and nothing else: no request id, log line, metrics, timeouts or limits.
//!
//!   cargo run --release --example bench-floor -- LISTEN_ADDR UPSTREAM_ADDR

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

type Body = UnsyncBoxBody<Bytes, hyper::Error>;
type Error = Box<dyn std::error::Error + Send + Sync>;

thread_local! {
    static POOL: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

async fn connect(upstream: SocketAddr) -> Result<SendRequest<Incoming>, Error> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The newest ready pooled connection (closed ones are dropped on the way), or a new one.
async fn sender(upstream: SocketAddr) -> Result<SendRequest<Incoming>, Error> {
    let pooled = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let mut index = pool.len();
        while index > 0 {
            index -= 1;
            if pool[index].is_ready() {
                return Some(pool.swap_remove(index));
            }
            if pool[index].is_closed() {
                pool.swap_remove(index);
            }
        }
        None
    });
    match pooled {
        Some(sender) => Ok(sender),
        None => connect(upstream).await,
    }
}

fn bad_gateway() -> Response<Body> {
    let body = Full::new(Bytes::from_static(b"bad gateway\n"))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

async fn proxy(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    upstream: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let peer = HeaderValue::from_str(&peer.ip().to_string()).expect("an address is a header");
    request.headers_mut().append(&XFF, peer);
    let Ok(mut sender) = sender(upstream).await else {
        return Ok(bad_gateway());
    };
    match sender.send_request(request).await {
        Ok(response) => {
            // The head is in: the connection takes its next request once this body ends.
            POOL.with(|pool| pool.borrow_mut().push(sender));
            Ok(response.map(BodyExt::boxed_unsync))
        }
        Err(_) => Ok(bad_gateway()),
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| proxy(request, peer, upstream));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR is host:port");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                if let Err(error) = runtime.block_on(serve(listen, upstream)) {
                    eprintln!("bench-floor: {error}");
                    std::process::exit(1);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
