//! The OpenAPI description (`openapi.json`, served at `GET /openapi.json`) is true of the server.
//!
//! One test drives real requests covering every documented path, method and status, and checks each
//! answer against the document: the path template and method are documented, the status is listed
//! for them, every required response header is there and every header sent matches its schema, and
//! the body matches the documented media type and JSON Schema (2020-12, `$ref`s resolved against the
//! document). A request answered 2xx must itself match the document (query and path parameters,
//! request body); a 422 must be one the document predicts (each query parameter or body field it
//! names is refused by that parameter's or property's schema, or is a required field left out).
//! Every path answers 405 for a method it does not list (`x-method-not-allowed`, with `allow`).
//! Finally every (path, method, status) the document lists must have been produced, and every
//! optional header, query parameter and request media type seen, so the document cannot promise
//! what the server never does; 503s come from a second server whose database is renamed away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method};
use serde_json::{json, Value};

use crate::common::{
    client, connect, fresh_database, id_of, server, start_server_on, str_of, unique, unique_email,
    unique_original_url, wait_for_clicks, with_database, Reply, TestServer, MISSING_ID,
};

/// (path template, method, status) the document lists that no request here produces, each with why.
/// Empty: every documented answer, 503s included (a server whose database is renamed away), is made.
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[];

/// The body limits of a server started with default settings (`GITREV_MAX_BODY_BYTES`,
/// `GITREV_MAX_UPLOAD_BYTES`).
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

const METHODS: [&str; 6] = ["get", "head", "post", "put", "patch", "delete"];

/// A JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What was sent, for checking requests against the document.
struct Sent<'a> {
    method: &'a Method,
    path: &'a str,
    content_type: Option<&'a str>,
    body: Option<&'a [u8]>,
}

/// The document, compiled schemas and what the run has exercised.
struct Spec {
    doc: Value,
    validators: HashMap<String, jsonschema::Validator>,
    /// (template, method, status) answered.
    exercised: BTreeSet<(String, String, String)>,
    /// (template, method, status, header) seen on an answer.
    headers_seen: BTreeSet<(String, String, String, String)>,
    /// (template, method, query parameter) sent on a request answered 2xx.
    params_seen: BTreeSet<(String, String, String)>,
    /// (template, method, media type) of a request body answered 2xx.
    bodies_seen: BTreeSet<(String, String, String)>,
    /// Templates whose unlisted methods answered 405.
    not_allowed: BTreeSet<String>,
}

impl Spec {
    fn new(doc: Value) -> Spec {
        Spec {
            doc,
            validators: HashMap::new(),
            exercised: BTreeSet::new(),
            headers_seen: BTreeSet::new(),
            params_seen: BTreeSet::new(),
            bodies_seen: BTreeSet::new(),
            not_allowed: BTreeSet::new(),
        }
    }

    fn at(&self, pointer: &str) -> &Value {
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("openapi.json has nothing at {pointer}"))
    }

    /// `pointer`, or where its `$ref` (followed to the end) points.
    fn follow(&self, pointer: &str) -> String {
        let mut pointer = pointer.to_string();
        for _ in 0..16 {
            match self.at(&pointer).get("$ref").and_then(Value::as_str) {
                Some(target) => {
                    pointer = target
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("only local $refs: {target}"))
                        .to_string()
                }
                None => return pointer,
            }
        }
        panic!("a $ref cycle at {pointer}")
    }

    /// The JSON Schema `type` of the schema at `pointer` (after `$ref`s), when it is one string.
    fn schema_type(&self, pointer: &str) -> Option<String> {
        let schema = self.at(&self.follow(pointer));
        match schema.get("type") {
            Some(Value::String(t)) => Some(t.clone()),
            _ => schema
                .get("allOf")
                .and_then(|all| all.get(0))
                .and_then(|first| first.get("$ref"))
                .and_then(Value::as_str)
                .and_then(|target| self.schema_type(target.strip_prefix('#')?)),
        }
    }

    /// The problems of `instance` against the schema at `pointer` (empty when it is valid).
    fn problems(&mut self, pointer: &str, instance: &Value) -> Vec<String> {
        if !self.validators.contains_key(pointer) {
            // The schema in place, with the document's components beside it so that
            // `#/components/...` references resolve.
            let root = json!({
                "components": self.doc["components"].clone(),
                "allOf": [self.at(pointer).clone()],
            });
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
            self.validators.insert(pointer.to_string(), validator);
        }
        self.validators[pointer]
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn assert_valid(&mut self, pointer: &str, instance: &Value, what: &str) {
        let problems = self.problems(pointer, instance);
        assert!(
            problems.is_empty(),
            "{what} does not match the schema at {pointer}: {problems:#?}\ninstance: {instance}"
        );
    }

    /// A header or parameter value as its schema types it.
    fn typed(&self, schema_pointer: &str, raw: &str) -> Value {
        match self.schema_type(schema_pointer).as_deref() {
            Some("integer") => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(raw.to_string())),
            _ => Value::String(raw.to_string()),
        }
    }

    /// The path template `path` matches: templates with more literal segments win, so `/users/bulk`
    /// beats `/users/{id}` and `/users` beats `/{short_code}`.
    fn template(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object().expect("paths is an object");
        paths
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, template)| template)
    }

    /// The parameters of an operation (path-level ones overridden by the operation's own) as
    /// (name, location) -> pointer of the parameter object.
    fn parameters(&self, template: &str, method: &str) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        let path_item = format!("/paths/{}", escape(template));
        for base in [path_item.clone(), format!("{path_item}/{method}")] {
            let Some(list) = self
                .doc
                .pointer(&format!("{base}/parameters"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for i in 0..list.len() {
                let pointer = self.follow(&format!("{base}/parameters/{i}"));
                let param = self.at(&pointer);
                let name = param["name"].as_str().expect("a parameter has a name");
                let location = param["in"].as_str().expect("a parameter has `in`");
                out.insert((name.to_string(), location.to_string()), pointer);
            }
        }
        out
    }

    /// Checks one answer against the document and records what it exercised.
    fn check(&mut self, sent: &Sent<'_>, reply: &Reply) {
        let what = format!("{} {} -> {}", sent.method, sent.path, reply.status);
        let (path, query) = match sent.path.split_once('?') {
            Some((path, query)) => (path, query),
            None => (sent.path, ""),
        };
        let template = self
            .template(path)
            .unwrap_or_else(|| panic!("{what}: no path in openapi.json matches {path}"));
        let method = sent.method.as_str().to_ascii_lowercase();
        let op = format!("/paths/{}/{method}", escape(&template));
        if self.doc.pointer(&op).is_none() {
            assert_eq!(
                reply.status, 405,
                "{what}: {method} is not documented for {template}, so the answer must be 405: {}",
                reply.text
            );
            let response = self.follow("/x-method-not-allowed");
            self.check_response(&response, reply, sent.method, &what, None);
            let listed: BTreeSet<String> = METHODS
                .iter()
                .filter(|m| {
                    self.doc
                        .pointer(&format!("/paths/{}/{m}", escape(&template)))
                        .is_some()
                })
                .map(|m| m.to_ascii_uppercase())
                .collect();
            let mut expected = listed.clone();
            if listed.contains("GET") {
                // Every GET path answers HEAD too (the document's description says so).
                expected.insert("HEAD".into());
            }
            let allow: BTreeSet<String> = reply
                .header("allow")
                .unwrap_or("")
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            assert_eq!(
                allow, expected,
                "{what}: `allow` lists the documented methods"
            );
            self.not_allowed.insert(template);
            return;
        }
        let status = reply.status.to_string();
        let documented = format!("{op}/responses/{status}");
        assert!(
            self.doc.pointer(&documented).is_some(),
            "{what}: status {status} is not documented for {} {template} (documented: {:?}); body {}",
            method.to_ascii_uppercase(),
            self.at(&format!("{op}/responses"))
                .as_object()
                .map(|r| r.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
            reply.text
        );
        let response = self.follow(&documented);
        let key = (template.clone(), method.clone(), status.clone());
        self.check_response(&response, reply, sent.method, &what, Some(&key));
        self.exercised.insert(key);

        if (200..300).contains(&reply.status) {
            self.check_request(sent, &template, &method, path, query, &what);
        } else if reply.status == 422 {
            self.check_rejection(sent, &template, &method, query, reply, &what);
        }
    }

    fn check_response(
        &mut self,
        response: &str,
        reply: &Reply,
        method: &Method,
        what: &str,
        key: Option<&(String, String, String)>,
    ) {
        let headers: Vec<String> = self
            .at(response)
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        for name in headers {
            let header = self.follow(&format!("{response}/headers/{}", escape(&name)));
            let required = self.at(&header)["required"].as_bool().unwrap_or(false);
            match reply.header(&name) {
                Some(value) => {
                    let schema = format!("{header}/schema");
                    let typed = self.typed(&schema, value);
                    self.assert_valid(&schema, &typed, &format!("{what}: header {name}"));
                    if let Some((template, method, status)) = key {
                        self.headers_seen.insert((
                            template.clone(),
                            method.clone(),
                            status.clone(),
                            name.clone(),
                        ));
                    }
                }
                None => assert!(!required, "{what}: the documented header {name} is missing"),
            }
        }
        let content = self.at(response).get("content").and_then(Value::as_object);
        match content {
            Some(content) if *method != Method::HEAD => {
                let content_type = essence(reply.header("content-type").unwrap_or(""));
                assert!(
                    content.contains_key(&content_type),
                    "{what}: content type {content_type:?} is not documented (documented: {:?})",
                    content.keys().collect::<Vec<_>>()
                );
                let instance = if content_type.ends_with("json") {
                    serde_json::from_str(&reply.text).unwrap_or_else(|e| {
                        panic!("{what}: the body is not JSON ({e}): {}", reply.text)
                    })
                } else {
                    Value::String(reply.text.clone())
                };
                let schema = format!("{response}/content/{}/schema", escape(&content_type));
                self.assert_valid(&schema, &instance, &format!("{what}: the body"));
            }
            _ => assert!(
                reply.text.is_empty(),
                "{what}: no body is documented, got {}",
                reply.text
            ),
        }
    }

    /// A request the server accepted must be one the document describes.
    fn check_request(
        &mut self,
        sent: &Sent<'_>,
        template: &str,
        method: &str,
        path: &str,
        query: &str,
        what: &str,
    ) {
        let parameters = self.parameters(template, method);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let pointer = parameters
                .get(&(name.to_string(), "query".into()))
                .unwrap_or_else(|| panic!("{what}: query parameter {name} is not documented"))
                .clone();
            let schema = format!("{pointer}/schema");
            let typed = self.typed(&schema, &value);
            self.assert_valid(&schema, &typed, &format!("{what}: query parameter {name}"));
            self.params_seen
                .insert((template.into(), method.into(), name.into_owned()));
        }
        for (part, segment) in template.split('/').zip(path.split('/')) {
            let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
                continue;
            };
            let pointer = parameters
                .get(&(name.to_string(), "path".into()))
                .unwrap_or_else(|| panic!("{what}: path parameter {name} is not documented"))
                .clone();
            let schema = format!("{pointer}/schema");
            let typed = self.typed(&schema, segment);
            self.assert_valid(&schema, &typed, &format!("{what}: path parameter {name}"));
        }
        let body_doc = format!("/paths/{}/{method}/requestBody", escape(template));
        match (self.doc.pointer(&body_doc).is_some(), sent.body) {
            (true, Some(body)) => {
                let body_doc = self.follow(&body_doc);
                let media = essence(sent.content_type.unwrap_or(""));
                let schema = format!("{body_doc}/content/{}/schema", escape(&media));
                assert!(
                    self.doc.pointer(&schema).is_some(),
                    "{what}: request media type {media:?} is not documented"
                );
                if media == "application/json" {
                    let instance: Value =
                        serde_json::from_slice(body).expect("a 2xx JSON request body is JSON");
                    self.assert_valid(&schema, &instance, &format!("{what}: the request body"));
                }
                self.bodies_seen
                    .insert((template.into(), method.into(), media));
            }
            (true, None) => panic!("{what}: a request body is documented but none was sent"),
            (false, Some(_)) => panic!("{what}: a body was accepted where none is documented"),
            (false, None) => {}
        }
    }

    /// A 422 must be predicted by the document: each query parameter it names has a schema that
    /// rejects the value sent; a body field it names makes the JSON body fail the body schema.
    fn check_rejection(
        &mut self,
        sent: &Sent<'_>,
        template: &str,
        method: &str,
        query: &str,
        reply: &Reply,
        what: &str,
    ) {
        let named: Vec<String> = reply.json["details"]
            .as_object()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        let parameters = self.parameters(template, method);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let mut body_fields = Vec::new();
        for field in &named {
            if let Some(pointer) = parameters.get(&(field.clone(), "query".into())) {
                let schema = format!("{pointer}/schema");
                let (_, raw) = pairs
                    .iter()
                    .find(|(k, _)| k == field)
                    .unwrap_or_else(|| panic!("{what}: 422 names {field}, which was not sent"));
                let typed = self.typed(&schema, raw);
                assert!(
                    !self.problems(&schema, &typed).is_empty(),
                    "{what}: the server refused query parameter {field}={raw:?}, which the document allows"
                );
            } else {
                body_fields.push(field);
            }
        }
        let body_doc = format!("/paths/{}/{method}/requestBody", escape(template));
        let json_body = sent
            .body
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        let (Some(instance), true) = (json_body, self.doc.pointer(&body_doc).is_some()) else {
            return;
        };
        let body_doc = self.follow(&body_doc);
        let schema = self.follow(&format!("{body_doc}/content/application~1json/schema"));
        // Each field the server refused, the document refuses too.
        for field in body_fields {
            match instance.get(field) {
                Some(value) => {
                    let property = format!("{schema}/properties/{}", escape(field));
                    assert!(
                        self.doc.pointer(&property).is_some(),
                        "{what}: the server validates {field}, which the body schema does not describe"
                    );
                    assert!(
                        !self.problems(&property, value).is_empty(),
                        "{what}: the server refused {field}: {value}, which the document allows; answer {}",
                        reply.text
                    );
                }
                None => {
                    let required = self.at(&schema)["required"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|f| f == field.as_str()));
                    assert!(
                        required,
                        "{what}: the server requires {field}, which the document does not; answer {}",
                        reply.text
                    );
                }
            }
        }
    }

    /// An answer to a path that matches no template: the document's generic 404.
    fn check_unmatched(&mut self, reply: &Reply, what: &str) {
        assert_eq!(reply.status, 404, "{what}: {}", reply.text);
        let response = self.follow("/components/responses/NotFound");
        self.check_response(&response, reply, &Method::GET, what, None);
    }

    /// Every (path, method, status) of the document was produced, every path answered 405 for a
    /// method it does not list, and every optional header, query parameter and request media type
    /// was seen.
    fn assert_complete(&self) {
        let mut missing = Vec::new();
        let paths = self.doc["paths"].as_object().expect("paths");
        for (template, item) in paths {
            if !self.not_allowed.contains(template) {
                missing.push(format!("405 for an unlisted method on {template}"));
            }
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let op_pointer = format!("/paths/{}/{method}", escape(template));
                for status in op["responses"].as_object().expect("responses").keys() {
                    let key = (template.clone(), method.to_string(), status.clone());
                    let excused = NOT_EXERCISED
                        .iter()
                        .any(|(t, m, s, _)| *t == template && *m == method && *s == status);
                    if excused {
                        continue;
                    }
                    if !self.exercised.contains(&key) {
                        missing.push(format!("{} {template} -> {status}", method.to_uppercase()));
                        continue;
                    }
                    let response = self.follow(&format!("{op_pointer}/responses/{status}"));
                    if let Some(headers) =
                        self.at(&response).get("headers").and_then(Value::as_object)
                    {
                        for name in headers.keys() {
                            let seen = (key.0.clone(), key.1.clone(), key.2.clone(), name.clone());
                            if !self.headers_seen.contains(&seen) {
                                missing.push(format!(
                                    "header {name} on {} {template} -> {status}",
                                    method.to_uppercase()
                                ));
                            }
                        }
                    }
                }
                for ((name, location), _) in self.parameters(template, method) {
                    if location == "query"
                        && !self.params_seen.contains(&(
                            template.clone(),
                            method.to_string(),
                            name.clone(),
                        ))
                    {
                        missing.push(format!(
                            "query parameter {name} of {} {template} on a 2xx",
                            method.to_uppercase()
                        ));
                    }
                }
                if op.get("requestBody").is_some() {
                    let pointer = self.follow(&format!("{op_pointer}/requestBody"));
                    for media in self.at(&pointer)["content"]
                        .as_object()
                        .expect("requestBody content")
                        .keys()
                    {
                        if !self.bodies_seen.contains(&(
                            template.clone(),
                            method.to_string(),
                            media.clone(),
                        )) {
                            missing.push(format!(
                                "request body {media} of {} {template} on a 2xx",
                                method.to_uppercase()
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "openapi.json documents what no request here produced:\n  {}",
            missing.join("\n  ")
        );
    }
}

/// Sends requests to one server and checks every answer against the document.
struct Driver<'a> {
    spec: &'a mut Spec,
    srv: &'a TestServer,
    c: Client,
}

impl Driver<'_> {
    /// Sends a request, checks the status is `expect`, then checks the answer against the document.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        expect: u16,
    ) -> Reply {
        let reply = self
            .srv
            .send(&self.c, method.clone(), path, content_type, body.clone())
            .await;
        assert_eq!(
            reply.status, expect,
            "{method} {path}: expected {expect}, got {} with body {}",
            reply.status, reply.text
        );
        self.spec.check(
            &Sent {
                method: &method,
                path,
                content_type,
                body: body.as_deref(),
            },
            &reply,
        );
        reply
    }

    async fn get(&mut self, path: &str, expect: u16) -> Reply {
        self.send(Method::GET, path, None, None, expect).await
    }

    async fn head(&mut self, path: &str, expect: u16) -> Reply {
        self.send(Method::HEAD, path, None, None, expect).await
    }

    async fn delete(&mut self, path: &str, expect: u16) -> Reply {
        self.send(Method::DELETE, path, None, None, expect).await
    }

    async fn json(&mut self, method: Method, path: &str, body: Value, expect: u16) -> Reply {
        let bytes = serde_json::to_vec(&body).expect("JSON serializes");
        self.send(method, path, Some("application/json"), Some(bytes), expect)
            .await
    }

    async fn raw(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &[u8],
        expect: u16,
    ) -> Reply {
        self.send(
            method,
            path,
            Some(content_type),
            Some(body.to_vec()),
            expect,
        )
        .await
    }

    /// Sends `method path` with a body of `size` bytes, over the server's limit, streamed while the
    /// answer is read (the server answers before reading the body, and closes), and checks the
    /// answer is a documented 413.
    async fn oversized(&mut self, method: Method, path: &str, content_type: &str, size: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let stream = tokio::net::TcpStream::connect(self.srv.listen_addr())
            .await
            .expect("connecting to the server");
        let (mut reader, mut writer) = stream.into_split();
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
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let reply = loop {
            if let Some(reply) = parse_response(&answer) {
                break reply;
            }
            match reader.read(&mut buf).await {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                end => panic!(
                    "{method} {path} with {size} bytes: no whole answer ({end:?}): {}",
                    String::from_utf8_lossy(&answer)
                ),
            }
        };
        writing.abort();
        assert_eq!(
            reply.status, 413,
            "{method} {path} with {size} bytes: {}",
            reply.text
        );
        self.spec.check(
            &Sent {
                method: &method,
                path,
                content_type: Some(content_type),
                body: None,
            },
            &reply,
        );
    }
}

/// Every write on a server with `GITREV_API_TOKEN`: 401 without the token; with it, every write
/// with a body whose body never arrives is a 408 once `GITREV_BODY_READ_TIMEOUT_MS` passes.
async fn guarded(spec: &mut Spec) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "openapi-token-4b1e9d";
    let url = fresh_database("oas401").await;
    let srv = start_server_on(
        &url,
        &[
            ("GITREV_API_TOKEN", TOKEN),
            ("GITREV_BODY_READ_TIMEOUT_MS", "200"),
        ],
    );
    let mut d = Driver {
        spec,
        srv: &srv,
        c: client(),
    };
    let json_ct = "application/json";
    let writes: [(Method, &str, Option<&str>); 10] = [
        (Method::POST, "/users", Some(json_ct)),
        (Method::POST, "/users/bulk", Some("text/csv")),
        (Method::PUT, "/users/1", Some(json_ct)),
        (Method::PATCH, "/users/1", Some(json_ct)),
        (Method::DELETE, "/users/1", None),
        (Method::POST, "/urls", Some(json_ct)),
        (Method::PUT, "/urls/1", Some(json_ct)),
        (Method::PATCH, "/urls/1", Some(json_ct)),
        (Method::DELETE, "/urls/1", None),
        (Method::POST, "/events", Some(json_ct)),
    ];
    for (method, path, content_type) in &writes {
        let body = content_type.map(|_| b"{}".to_vec());
        d.send(method.clone(), path, *content_type, body, 401).await;
    }
    for (method, path, content_type) in &writes {
        let Some(content_type) = content_type else {
            continue;
        };
        let mut stream = tokio::net::TcpStream::connect(srv.listen_addr())
            .await
            .expect("connecting to the server");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: {content_type}\r\ncontent-length: 64\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("writing");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let reply = loop {
            if let Some(reply) = parse_response(&answer) {
                break reply;
            }
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
                end => panic!("{method} {path} with a stalled body: no answer ({end:?})"),
            }
        };
        assert_eq!(reply.status, 408, "{method} {path}: {}", reply.text);
        d.spec.check(
            &Sent {
                method,
                path,
                content_type: Some(content_type),
                body: None,
            },
            &reply,
        );
    }
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

fn multipart(field: &str, csv: &str) -> (String, Vec<u8>) {
    let boundary = "gitrevopenapiboundary";
    let body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"{field}\"; filename=\"users.csv\"\r\n\
         content-type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

/// A users CSV with `good` importable rows and one row with a bad email.
fn users_csv(good: usize) -> String {
    let mut csv = String::from("username,email\n");
    for _ in 0..good {
        csv.push_str(&format!("{},{}\n", unique("bulk"), unique_email()));
    }
    csv.push_str("broken,not-an-email\n");
    csv
}

/// A method `template` does not list, for the 405 check.
fn unlisted_method(spec: &Spec, template: &str) -> Method {
    ["delete", "post", "put", "patch", "get"]
        .into_iter()
        .find(|m| {
            spec.doc
                .pointer(&format!("/paths/{}/{m}", escape(template)))
                .is_none()
        })
        .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).expect("a method"))
        .unwrap_or_else(|| panic!("{template} lists every method"))
}

fn load_document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[tokio::test]
async fn every_schema_in_the_document_compiles() {
    let mut spec = Spec::new(load_document());
    assert_eq!(spec.doc["openapi"], "3.1.0");
    let names: Vec<String> = spec.doc["components"]["schemas"]
        .as_object()
        .expect("components/schemas")
        .keys()
        .cloned()
        .collect();
    for name in names {
        // Compiling resolves every $ref the schema makes.
        let _ = spec.problems(&format!("/components/schemas/{name}"), &Value::Null);
    }
    // A few spot checks that the schemas are as tight as they claim.
    let user = "/components/schemas/User";
    let good = json!({"id": 1, "username": "ada", "email": "ada@x.io",
                      "created_at": "2025-09-19T22:25:05"});
    assert!(spec.problems(user, &good).is_empty());
    for bad in [
        json!({"id": 1, "username": "ada", "email": "ada@x.io", "created_at": "2025-09-19 22:25:05"}),
        json!({"id": 1, "username": "ada", "email": "ada@x.io", "created_at": "2025-09-19T22:25:05Z"}),
        json!({"id": 1, "username": "ada", "email": "ada@x.io"}),
        json!({"id": 1, "username": "ada", "email": "ada@x.io", "created_at": "2025-09-19T22:25:05",
               "extra": 1}),
        json!({"id": "1", "username": "ada", "email": "ada@x.io", "created_at": "2025-09-19T22:25:05"}),
    ] {
        assert!(!spec.problems(user, &bad).is_empty(), "{bad} must not pass");
    }
    let error = "/components/schemas/Error";
    assert!(!spec
        .problems(error, &json!({"error": "x", "code": "teapot"}))
        .is_empty());
    assert!(spec
        .problems(
            error,
            &json!({"error": "x", "code": "conflict", "details": {"email": "taken"}})
        )
        .is_empty());
    assert!(!spec
        .problems(
            error,
            &json!({"error": "x", "code": "conflict", "details": {"email": 1}})
        )
        .is_empty());
}

/// Renames a database away (terminating its sessions until the rename goes through).
async fn rename_database(admin: &tokio_postgres::Client, from: &str, to: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&from],
            )
            .await
            .expect("terminating the server's sessions");
        match admin
            .batch_execute(&format!("ALTER DATABASE \"{from}\" RENAME TO \"{to}\""))
            .await
        {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("renaming {from} to {to}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn the_document_is_served_and_true() {
    let srv = server();
    let on_disk = load_document();

    // The served document is the file.
    let served = srv
        .get(&client(), "/openapi.json")
        .await
        .expect(200, "GET /openapi.json");
    assert_eq!(
        served.json, on_disk,
        "GET /openapi.json serves openapi.json (rebuild after editing it)"
    );
    let mut spec = Spec::new(on_disk);
    let mut d = Driver {
        spec: &mut spec,
        srv,
        c: client(),
    };
    let missing = MISSING_ID;
    let (post, put, patch) = (Method::POST, Method::PUT, Method::PATCH);

    // Operations.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        d.get(path, 200).await;
    }

    // Users.
    let email_a = unique_email();
    let new_user = || json!({"username": unique("user"), "email": unique_email()});
    let body = json!({"username": unique("user"), "email": email_a, "ignored": true});
    let a = id_of(&d.json(post.clone(), "/users", body, 201).await.json);
    let user_b = d.json(post.clone(), "/users", new_user(), 201).await;
    let email_b = str_of(&user_b.json, "email").to_string();
    let taken = json!({"username": "dup", "email": email_a.to_uppercase()});
    d.json(post.clone(), "/users", taken, 409).await;
    d.raw(post.clone(), "/users", "text/plain", b"hello", 400)
        .await;
    let bad = json!({"username": 7, "email": "x"});
    d.json(post.clone(), "/users", bad, 422).await;
    for bad in [
        json!({"username": "no email"}),
        json!({"username": "ada", "email": "no-at-sign"}),
        json!({"username": "ada", "email": "a@localhost"}),
        json!({"username": " ", "email": unique_email()}),
    ] {
        d.json(post.clone(), "/users", bad, 422).await;
    }
    d.oversized(
        post.clone(),
        "/users",
        "application/json",
        MAX_BODY_BYTES + 1,
    )
    .await;

    d.get("/users?page=1&per_page=1", 200).await;
    d.get("/users?page=2", 200).await;
    d.get("/users?per_page=0", 422).await;
    d.get("/users?page=abc&per_page=1001", 422).await;
    d.get(&format!("/users/{a}"), 200).await;
    d.get(&format!("/users/{missing}"), 404).await;
    for method in [put.clone(), patch.clone()] {
        let path = format!("/users/{a}");
        let renamed = json!({"username": unique("renamed")});
        d.json(method.clone(), &path, renamed, 200).await;
        d.json(method.clone(), &path, json!({}), 200).await;
        d.raw(method.clone(), &path, "application/json", b"[1]", 400)
            .await;
        let bad = json!({"email": 5, "username": null});
        d.json(method.clone(), &path, bad, 422).await;
        d.json(method.clone(), &path, json!({"email": email_b}), 409)
            .await;
        let other = format!("/users/{missing}");
        d.json(method.clone(), &other, json!({"username": "x"}), 404)
            .await;
        d.oversized(method, &path, "application/json", MAX_BODY_BYTES + 1)
            .await;
    }
    let doomed = id_of(&d.json(post.clone(), "/users", new_user(), 201).await.json);
    d.delete(&format!("/users/{doomed}"), 204).await;
    d.delete(&format!("/users/{doomed}"), 404).await;

    // Bulk import.
    let bulk = "/users/bulk";
    let (ct, body) = multipart("file", &users_csv(2));
    let report = d.send(post.clone(), bulk, Some(&ct), Some(body), 201).await;
    assert_eq!(report.json["skipped"], 1, "{}", report.text);
    for ct in ["text/csv", "application/csv"] {
        d.raw(post.clone(), bulk, ct, users_csv(1).as_bytes(), 201)
            .await;
    }
    d.raw(post.clone(), bulk, "multipart/form-data", b"x", 400)
        .await;
    let (ct, body) = multipart("other", &users_csv(1));
    d.send(post.clone(), bulk, Some(&ct), Some(body), 422).await;
    d.raw(post.clone(), bulk, "text/csv", b"id,name\n1,x\n", 422)
        .await;
    d.raw(post.clone(), bulk, "application/json", b"{}", 415)
        .await;
    d.oversized(post.clone(), bulk, "text/csv", MAX_UPLOAD_BYTES + 1)
        .await;

    // Urls.
    let body = json!({"original_url": unique_original_url(), "user_id": a, "title": "one"});
    let url_1 = d.json(post.clone(), "/urls", body, 201).await;
    let u1 = id_of(&url_1.json);
    let code_1 = str_of(&url_1.json, "short_code").to_string();
    let body = json!({"original_url": unique_original_url(), "user_id": a, "is_active": false});
    let url_2 = d.json(post.clone(), "/urls", body, 201).await;
    let u2 = id_of(&url_2.json);
    let inactive = str_of(&url_2.json, "short_code").to_string();
    let custom = unique("c");
    let body = json!({"original_url": unique_original_url(), "short_code": custom,
                      "title": null, "user_id": null});
    d.json(post.clone(), "/urls", body, 201).await;
    let body = json!({"original_url": unique_original_url(), "short_code": custom});
    d.json(post.clone(), "/urls", body, 409).await;
    let body = json!({"original_url": unique_original_url(), "user_id": missing});
    d.json(post.clone(), "/urls", body, 404).await;
    for bad in [
        json!({"original_url": "hello"}),
        json!({"original_url": "example.com"}),
        json!({"original_url": "http://"}),
        json!({"original_url": "https://x.io/a b"}),
        json!({"original_url": "https://x.io", "short_code": "bad code"}),
        json!({"original_url": "https://x.io", "short_code": "x".repeat(33)}),
        json!({"original_url": "https://x.io", "title": "t".repeat(501)}),
        json!({"original_url": "https://x.io", "short_code": "Users"}),
        json!({"original_url": "ftp://x", "is_active": "yes", "user_id": "1"}),
    ] {
        d.json(post.clone(), "/urls", bad, 422).await;
    }
    d.raw(post.clone(), "/urls", "application/json", b"", 400)
        .await;
    d.oversized(
        post.clone(),
        "/urls",
        "application/json",
        MAX_BODY_BYTES + 1,
    )
    .await;

    let listed = d
        .get(&format!("/urls?user_id={a}&page=1&per_page=1"), 200)
        .await;
    assert!(
        listed.header("link").is_some(),
        "2 urls, 1 per page: a link"
    );
    d.get(&format!("/urls?user_id={a}&is_active=TRUE"), 200)
        .await;
    d.get(&format!("/urls?short_code={custom}"), 200).await;
    d.get("/urls?is_active=maybe", 422).await;
    d.get("/urls?user_id=abc", 422).await;
    d.get(&format!("/urls/{u1}"), 200).await;
    d.get(&format!("/urls/{missing}"), 404).await;
    for method in [put.clone(), patch.clone()] {
        let path = format!("/urls/{u1}");
        let title = json!({"title": unique("title")});
        d.json(method.clone(), &path, title, 200).await;
        let body = json!({"is_active": true, "original_url": unique_original_url(), "title": null});
        d.json(method.clone(), &path, body, 200).await;
        d.raw(method.clone(), &path, "application/json", b"null", 400)
            .await;
        d.json(method.clone(), &path, json!({"is_active": "yes"}), 422)
            .await;
        d.json(method.clone(), &path, json!({"original_url": null}), 422)
            .await;
        let other = format!("/urls/{missing}");
        d.json(method.clone(), &other, json!({"title": "x"}), 404)
            .await;
        d.oversized(method, &path, "application/json", MAX_BODY_BYTES + 1)
            .await;
    }
    d.get(&format!("/urls/{u1}/stats"), 200).await;
    d.get(&format!("/urls/{missing}/stats"), 404).await;

    // Redirect.
    d.head(&format!("/{code_1}"), 302).await;
    d.get(&format!("/{code_1}"), 302).await;
    wait_for_clicks(&d.c, u1, 1).await;
    let stats = d.get(&format!("/urls/{u1}/stats"), 200).await;
    assert!(stats.json["last_click_at"].is_string(), "{}", stats.text);
    let unknown = unique("nx");
    d.get(&format!("/{unknown}"), 404).await;
    d.head(&format!("/{unknown}"), 404).await;
    d.get(&format!("/{inactive}"), 404).await;

    // Events.
    let body = json!({"event_type": "shared", "url_id": u1, "user_id": a,
                      "details": {"via": "test"}});
    let e = id_of(&d.json(post.clone(), "/events", body, 201).await.json);
    let body = json!({"event_type": "viewed", "url_id": u1, "details": null});
    d.json(post.clone(), "/events", body, 201).await;
    for unknown in [
        json!({"event_type": "x", "url_id": missing}),
        json!({"event_type": "x", "url_id": u1, "user_id": missing}),
    ] {
        d.json(post.clone(), "/events", unknown, 404).await;
    }
    for bad in [
        json!({"event_type": "x", "url_id": u1, "details": "str"}),
        json!({"event_type": ""}),
        json!({"event_type": "e".repeat(65), "url_id": u1}),
        json!({"event_type": "x", "url_id": "1"}),
    ] {
        d.json(post.clone(), "/events", bad, 422).await;
    }
    d.raw(post.clone(), "/events", "application/json", b"[]", 400)
        .await;
    d.oversized(
        post.clone(),
        "/events",
        "application/json",
        MAX_BODY_BYTES + 1,
    )
    .await;
    let listed = d
        .get(&format!("/events?url_id={u1}&page=1&per_page=1"), 200)
        .await;
    assert!(
        listed.header("link").is_some(),
        "events, 1 per page: a link"
    );
    d.get(
        &format!("/events?url_id={u1}&user_id={a}&event_type=click"),
        200,
    )
    .await;
    d.get("/events?url_id=x&user_id=1.5", 422).await;
    d.get(&format!("/events/{e}"), 200).await;
    d.get(&format!("/events/{missing}"), 404).await;

    // Deleting a url.
    d.delete(&format!("/urls/{u2}"), 204).await;
    d.delete(&format!("/urls/{u2}"), 404).await;

    // 405 on every path, for a method it does not list.
    let templates: Vec<String> = d.spec.doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    for template in templates {
        let method = unlisted_method(d.spec, &template);
        let path = template
            .replace("{id}", &u1.to_string())
            .replace("{short_code}", &code_1);
        d.send(method, &path, None, None, 405).await;
    }

    // Paths that match no template.
    for path in ["/users/abc", "/a/b/c/d", "/openapi.yaml"] {
        let reply = srv.get(&d.c, path).await;
        d.spec.check_unmatched(&reply, &format!("GET {path}"));
    }

    // 503: a server whose database goes away.
    unavailable(d.spec).await;
    // 401 and 408: a server with an API token and a short body read timeout.
    guarded(d.spec).await;

    spec.assert_complete();
}

/// Every operation that needs the database, on a server whose database was renamed away: 503 with
/// `retry-after` (and `/ready` 503 with the reason).
async fn unavailable(spec: &mut Spec) {
    let url = fresh_database("oas503").await;
    let name = url
        .rsplit('/')
        .next()
        .expect("a database url has a path")
        .to_string();
    // Default timeouts: the requests below go out at once, so the pool timeout is waited once.
    let srv = start_server_on(&url, &[]);
    let mut d = Driver {
        spec,
        srv: &srv,
        c: client(),
    };
    let post = Method::POST;
    let body = json!({"username": "u", "email": unique_email()});
    let user = id_of(&d.json(post.clone(), "/users", body, 201).await.json);
    let body = json!({"original_url": unique_original_url(), "user_id": user});
    let link = id_of(&d.json(post.clone(), "/urls", body, 201).await.json);
    let body = json!({"event_type": "x", "url_id": link});
    let event = id_of(&d.json(post.clone(), "/events", body, 201).await.json);

    let admin = connect(&with_database(&url, "postgres")).await;
    rename_database(&admin, &name, &unique("away")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.get(&d.c, "/ready").await.status != 503 {
        assert!(
            Instant::now() < deadline,
            "/ready stays 200 without a database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.get("/ready", 503).await;

    let json_ct = Some("application/json");
    let user_body = json!({"username": "u", "email": unique_email()}).to_string();
    let url_body = json!({"original_url": unique_original_url()}).to_string();
    let event_body = json!({"event_type": "x", "url_id": link}).to_string();
    let csv = format!("username,email\nu,{}\n", unique_email());
    let rename = r#"{"username":"v"}"#.to_string();
    let title = r#"{"title":"t"}"#.to_string();
    let requests: Vec<(Method, String, Option<&str>, Option<String>)> = vec![
        (Method::GET, "/users?page=1&per_page=1".into(), None, None),
        (post.clone(), "/users".into(), json_ct, Some(user_body)),
        (
            post.clone(),
            "/users/bulk".into(),
            Some("text/csv"),
            Some(csv),
        ),
        (Method::GET, format!("/users/{user}"), None, None),
        (
            Method::PUT,
            format!("/users/{user}"),
            json_ct,
            Some(rename.clone()),
        ),
        (
            Method::PATCH,
            format!("/users/{user}"),
            json_ct,
            Some(rename),
        ),
        (Method::DELETE, format!("/users/{user}"), None, None),
        (Method::GET, "/urls".into(), None, None),
        (post.clone(), "/urls".into(), json_ct, Some(url_body)),
        (Method::GET, format!("/urls/{link}"), None, None),
        (
            Method::PUT,
            format!("/urls/{link}"),
            json_ct,
            Some(title.clone()),
        ),
        (Method::PATCH, format!("/urls/{link}"), json_ct, Some(title)),
        (Method::DELETE, format!("/urls/{link}"), None, None),
        (Method::GET, format!("/urls/{link}/stats"), None, None),
        (Method::GET, "/events".into(), None, None),
        (post.clone(), "/events".into(), json_ct, Some(event_body)),
        (Method::GET, format!("/events/{event}"), None, None),
        (Method::GET, format!("/{}", unique("nx")), None, None),
        (Method::HEAD, format!("/{}", unique("nx")), None, None),
    ];
    // All at once: each waits for the pool timeout.
    let replies = futures_util::future::join_all(requests.iter().map(|(m, p, ct, body)| {
        srv.send(
            &d.c,
            m.clone(),
            p,
            *ct,
            body.clone().map(String::into_bytes),
        )
    }))
    .await;
    for ((method, path, content_type, body), reply) in requests.iter().zip(&replies) {
        assert_eq!(
            reply.status, 503,
            "{method} {path} with the database gone: {}",
            reply.text
        );
        let sent = Sent {
            method,
            path,
            content_type: *content_type,
            body: body.as_deref().map(str::as_bytes),
        };
        d.spec.check(&sent, reply);
    }
}
