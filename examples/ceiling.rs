//! The ceiling: a bare hyper server that answers every request with the same 302, doing nothing
//! else. Whatever it reaches on a machine is the most a redirect can reach there; `perf/` runs it
//! side by side with gitrev in the same load run.
//!
//! Run: `cargo run --release --example ceiling -- 127.0.0.1:8090`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("ceiling: answering 302 on {addr}");
    let location = HeaderValue::from_static("https://example.com/some/path/1?utm_source=bench");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let location = location.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(LOCATION, location.clone());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
