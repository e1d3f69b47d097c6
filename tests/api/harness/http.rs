//! Talking HTTP to a server: a client that never follows redirects, requests through [`TestServer`]
//! that come back as a [`Reply`] read completely, and raw sockets for what a polite client cannot send
//! (a body that never arrives, one far over the limit).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::poll::poll;
use super::server::TestServer;
use super::shapes::assert_json_content_type;

/// One HTTP answer, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON, or `Value::Null` when it is not JSON.
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics, showing the body, unless the status is `status`.
    pub fn expect(self, status: u16, what: &str) -> Reply {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// The body as a JSON array, after checking the content type.
    pub fn array(&self) -> &Vec<Value> {
        assert_json_content_type(self);
        self.json
            .as_array()
            .unwrap_or_else(|| panic!("expected a JSON array, got {}", self.text))
    }

    pub fn total_count(&self) -> i64 {
        self.header("x-total-count")
            .unwrap_or_else(|| panic!("no x-total-count header on a list response"))
            .parse()
            .expect("x-total-count must be an integer")
    }
}

/// A client that never follows redirects: the redirect tests look at the 302 itself.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain-http client always builds")
}

/// A [`client`] that sends `authorization: Bearer <key>` with every request.
pub fn client_with_key(key: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .expect("a key is a visible header value");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .expect("a plain-http client always builds")
}

pub async fn read_reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the body can be read");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        client: &Client,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = client.request(method, self.url(path));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        read_reply(request).await
    }

    pub async fn get(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::GET, path, None, None).await
    }

    pub async fn head(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::HEAD, path, None, None).await
    }

    pub async fn delete(&self, client: &Client, path: &str) -> Reply {
        self.send(client, Method::DELETE, path, None, None).await
    }

    pub async fn post(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::POST, path, body).await
    }

    pub async fn put(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::PUT, path, body).await
    }

    pub async fn patch(&self, client: &Client, path: &str, body: &Value) -> Reply {
        self.send_json(client, Method::PATCH, path, body).await
    }

    async fn send_json(&self, client: &Client, method: Method, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("a serde_json::Value always serializes");
        self.send(client, method, path, Some("application/json"), Some(bytes))
            .await
    }

    /// Polls `GET path` until `done` holds or `within` passes; the last answer either way.
    pub async fn poll_get(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let c = client();
        poll(within, || self.get(&c, path), done)
            .await
            .unwrap_or_else(|last| last)
    }

    /// Polls `GET /ready` until it answers `want` (that answer), failing after `within`.
    pub async fn wait_for_ready(&self, want: u16, within: Duration) -> Reply {
        let reply = self.poll_get("/ready", within, |r| r.status == want).await;
        assert_eq!(
            reply.status, want,
            "/ready did not turn {want} within {within:?}: {}",
            reply.text
        );
        reply
    }

    /// Opens a raw connection to the server.
    pub async fn connect_raw(&self) -> TcpStream {
        TcpStream::connect(self.listen_addr())
            .await
            .expect("connecting to the server")
    }

    /// Sends `head` (a request head and as much of the body as the test wants, maybe none) on a raw
    /// connection and reads the first answer: `None` when none came within `within`.
    pub async fn raw_exchange(&self, head: &[u8], within: Duration) -> Option<Reply> {
        let mut stream = self.connect_raw().await;
        stream.write_all(head).await.expect("writing the request");
        read_raw_reply(&mut stream, within).await
    }

    /// Sends `method path` with a JSON body on a raw connection and returns it once the request is in
    /// flight: the head asks `expect: 100-continue`, which the server answers when its handler starts
    /// reading the body, and only then is the body sent. Read the answer with [`read_raw_reply`].
    pub async fn send_in_flight(&self, method: &str, path: &str, body: &Value) -> TcpStream {
        let body = serde_json::to_vec(body).expect("a serde_json::Value always serializes");
        let mut stream = self.connect_raw().await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nexpect: 100-continue\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("writing the head");
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte: nothing after the interim answer's head may be taken from the stream.
        while !interim.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await;
            match read {
                Ok(Ok(1)) => interim.push(byte[0]),
                other => panic!(
                    "{method} {path}: no 100 Continue ({other:?}) after {:?}",
                    String::from_utf8_lossy(&interim)
                ),
            }
        }
        assert!(
            interim.starts_with(b"HTTP/1.1 100"),
            "{method} {path}: expected 100 Continue, got {:?}",
            String::from_utf8_lossy(&interim)
        );
        stream.write_all(&body).await.expect("writing the body");
        stream
    }

    /// Sends `method path` declaring and streaming a body of `size` bytes, and reads the answer while
    /// the body is still being written (a server answers a body over its limit before reading it all,
    /// and closes).
    pub async fn send_oversized(
        &self,
        method: &Method,
        path: &str,
        content_type: &str,
        size: usize,
    ) -> Reply {
        let (mut reader, mut writer) = self.connect_raw().await.into_split();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n\
             content-length: {size}\r\nconnection: close\r\n\r\n"
        );
        let writing = tokio::spawn(async move {
            if writer.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                if writer.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        let reply = read_raw_reply(&mut reader, Duration::from_secs(60)).await;
        writing.abort();
        reply.unwrap_or_else(|| panic!("{method} {path} with {size} bytes: no whole answer"))
    }
}

/// Reads one whole answer (a head and its `content-length` body) from a raw connection: `None` when
/// the connection ends first or `within` passes.
pub async fn read_raw_reply<R: AsyncRead + Unpin>(
    reader: &mut R,
    within: Duration,
) -> Option<Reply> {
    let read = async {
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Some(reply) = parse_response(&answer) {
                return Some(reply);
            }
            match reader.read(&mut buf).await {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Everything the server sends until it closes the connection (or `within` passes), as text.
pub async fn read_to_close<R: AsyncRead + Unpin>(reader: &mut R, within: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, reader.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A whole HTTP/1.1 response with a `content-length` body, or `None` while more is needed.
fn parse_response(bytes: &[u8]) -> Option<Reply> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let body = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())?;
    if body.len() < length {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..length]).to_string();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Some(Reply {
        status,
        headers,
        text,
        json,
    })
}
