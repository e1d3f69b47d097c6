//! Request handling: one module per resource. Handlers validate input, call the store and shape
//! the response; the error type ([`error`], the one error edge) alone decides error statuses,
//! headers and bodies.

pub mod analytics;
pub mod auth;
pub mod bound;
pub mod error;
pub mod events;
pub mod keys;
pub mod ops;
pub mod qr;
pub mod redirect;
pub mod request_id;
pub mod urls;
pub mod users;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitrev_core::model::{Event, NewEvent, NewUrl, NewUser, Url, User};
use gitrev_http::query::{Pagination, Query};
use gitrev_http::response;
use gitrev_http::router::{route, Route};
use gitrev_http::{body, Response};
use gitrev_links::batch::{ClickQueue, GroupWriter};
use gitrev_links::cache::LinkCache;
use gitrev_links::keys::Keyring;
use gitrev_store::{Store, StoreError};
use gitrev_telemetry::Metrics;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use tracing::{error, info};

pub use error::ApiError;

/// Which requests get an access log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// Every request (one line each: costly at redirect rates).
    All,
    /// Only requests answered with a 5xx.
    Errors,
    Off,
}

/// What the handlers take from the service's settings.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Most rows a list returns when neither page nor per_page is given.
    pub list_cap: u32,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest CSV upload to `POST /users/bulk`, in bytes.
    pub max_upload_bytes: usize,
    /// Longest a request body may stall, in milliseconds (0: no limit).
    pub body_read_timeout_ms: u64,
    /// The short links' origin in QR codes (`GITREV_PUBLIC_URL`, no trailing slash); `None`: the
    /// request's `host`.
    pub public_url: Option<String>,
    pub access_log: AccessLog,
}

impl ApiSettings {
    pub fn body_read_timeout(&self) -> Option<Duration> {
        (self.body_read_timeout_ms > 0).then(|| Duration::from_millis(self.body_read_timeout_ms))
    }
}

/// A grouped writer of one kind of row: each request gets its own row or its own error.
pub type Grouped<Req, T> = GroupWriter<Req, Result<T, StoreError>>;

/// The grouped writers of `POST /users`, `POST /urls` and `POST /events`.
pub struct Writers {
    pub users: Grouped<NewUser, User>,
    pub urls: Grouped<NewUrl, Url>,
    pub events: Grouped<NewEvent, Event>,
}

/// Writes `request` through its group writer when grouping is on, else `alone`.
pub(crate) async fn write<Req, T, Fut>(
    writer: Option<&Grouped<Req, T>>,
    request: Req,
    alone: impl FnOnce(Req) -> Fut,
) -> Result<T, StoreError>
where
    Req: Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = Result<T, StoreError>>,
{
    match writer {
        Some(writer) => writer.submit(request).await.unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the grouped writer has stopped".into(),
            ))
        }),
        None => alone(request).await,
    }
}

/// Everything a handler needs, built once at start (see `service`) and shared.
pub struct AppState {
    pub settings: ApiSettings,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub redirect_status: StatusCode,
    pub links: LinkCache,
    pub clicks: ClickQueue,
    /// The API keys (and `GITREV_API_TOKEN`) requests are checked against.
    pub keyring: Keyring,
    /// `None` when `GITREV_USER_BATCH=off`: one insert per request.
    pub writers: Option<Writers>,
}

pub type HandlerResult = Result<Response, ApiError>;

/// The service function: route, handle, turn errors into responses (the error edge), count and
/// log: a 5xx once, here, with its cause.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response, Infallible> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let request_id = request_id::from_request(&parts.headers);
    let route = route(parts.uri.path());
    let route_name = route.name();
    let mut standing = None;
    let mut response = match dispatch(&state, route, &parts, incoming, &mut standing).await {
        Ok(response) => response,
        Err(err) => {
            if err.status().is_server_error() {
                error!(request_id = %request_id.to_str().unwrap_or("-"), route = route_name,
                       method = %parts.method, error = %err, "request failed");
            }
            err.response()
        }
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe_request(
        route_name,
        method_label(&parts.method),
        status,
        elapsed.as_secs_f64(),
    );
    if state.settings.access_log == AccessLog::All
        || (state.settings.access_log == AccessLog::Errors && status >= 500)
    {
        info!(
            request_id = %request_id.to_str().unwrap_or("-"),
            route = route_name,
            method = %parts.method,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "served"
        );
    }
    let headers = response.headers_mut();
    headers.insert(request_id::HEADER, request_id);
    if let Some(standing) = &standing {
        headers.extend(auth::rate_headers(standing));
    }
    Ok(response)
}

fn allowed(route: Route<'_>) -> &'static str {
    match route {
        Route::Health
        | Route::Ready
        | Route::Metrics
        | Route::OpenApi
        | Route::UrlStats(_)
        | Route::UrlTimeseries(_)
        | Route::UrlBreakdown(_)
        | Route::UrlClicksCsv(_)
        | Route::UrlQrSvg(_)
        | Route::UrlQrPng(_)
        | Route::Event(_) => "GET, HEAD",
        Route::Redirect(_) => "GET, HEAD",
        Route::Users | Route::Urls | Route::Events | Route::Keys => "GET, HEAD, POST",
        Route::Key(_) => "DELETE",
        Route::UsersBulk | Route::UrlsBulk => "POST",
        Route::User(_) | Route::Url(_) => "GET, HEAD, PUT, PATCH, DELETE",
        Route::NotFound => "",
    }
}

async fn dispatch(
    state: &AppState,
    route: Route<'_>,
    parts: &hyper::http::request::Parts,
    incoming: Incoming,
    standing: &mut Option<gitrev_links::keys::RateStanding>,
) -> HandlerResult {
    let mut query = parts.uri.query();
    let method = if parts.method == Method::HEAD {
        // HEAD answers like GET without a body (hyper drops it); only the redirect tells them apart.
        if let Route::Redirect(code) = route {
            return redirect::redirect(state, code, parts.uri.query(), &parts.headers, false).await;
        }
        Method::GET
    } else {
        parts.method.clone()
    };
    let user = auth::authorize(state, route, &method, &parts.headers, standing).await?;
    let filtered;
    if let Some(user) = user {
        bound::check(state, route, &method, user).await?;
        if route == Route::Users && method == Method::GET {
            return users::list_only(state, query, user).await;
        }
        filtered = bound::list_query(route, query, user);
        if filtered.is_some() {
            query = filtered.as_deref();
        }
    }
    let json_body = |incoming| async move {
        let mut body = json_object(state, &parts.headers, incoming).await?;
        if let Some(user) = user {
            bound::body(state, route, user, &mut body).await?;
        }
        Ok::<_, ApiError>(body)
    };
    match (route, method) {
        (Route::Health, Method::GET) => ops::health(),
        (Route::Ready, Method::GET) => ops::ready(state).await,
        (Route::Metrics, Method::GET) => ops::metrics(state).await,
        (Route::OpenApi, Method::GET) => ops::openapi(),

        (Route::Users, Method::GET) => users::list(state, query).await,
        (Route::Users, Method::POST) => users::create(state, json_body(incoming).await?).await,
        (Route::UsersBulk, Method::POST) => users::bulk(state, &parts.headers, incoming).await,
        (Route::User(id), Method::GET) => users::get(state, id).await,
        (Route::User(id), Method::PUT | Method::PATCH) => {
            users::update(state, id, json_body(incoming).await?).await
        }
        (Route::User(id), Method::DELETE) => users::delete(state, id).await,

        (Route::Urls, Method::GET) => urls::list(state, query).await,
        (Route::Urls, Method::POST) => urls::create(state, json_body(incoming).await?).await,
        (Route::Url(id), Method::GET) => urls::get(state, id).await,
        (Route::Url(id), Method::PUT | Method::PATCH) => {
            urls::update(state, id, json_body(incoming).await?).await
        }
        (Route::Url(id), Method::DELETE) => urls::delete(state, id).await,
        (Route::UrlStats(id), Method::GET) => urls::stats(state, id).await,
        (Route::UrlTimeseries(id), Method::GET) => analytics::timeseries(state, id, query).await,
        (Route::UrlBreakdown(id), Method::GET) => analytics::breakdown(state, id, query).await,
        (Route::UrlClicksCsv(id), Method::GET) => analytics::export(state, id, query).await,
        (Route::UrlsBulk, Method::POST) => urls::bulk(state, &parts.headers, incoming, user).await,
        (Route::UrlQrSvg(id), Method::GET) => {
            urls::qr(state, id, &parts.headers, query, urls::QrFormat::Svg).await
        }
        (Route::UrlQrPng(id), Method::GET) => {
            urls::qr(state, id, &parts.headers, query, urls::QrFormat::Png).await
        }

        (Route::Events, Method::GET) => events::list(state, query).await,
        (Route::Events, Method::POST) => events::create(state, json_body(incoming).await?).await,
        (Route::Event(id), Method::GET) => events::get(state, id).await,

        (Route::Keys, Method::GET) => keys::list(state).await,
        (Route::Keys, Method::POST) => keys::create(state, json_body(incoming).await?).await,
        (Route::Key(id), Method::DELETE) => keys::revoke(state, id).await,

        (Route::Redirect(code), Method::GET) => {
            redirect::redirect(state, code, parts.uri.query(), &parts.headers, true).await
        }

        (Route::NotFound, _) => Err(ApiError::NotFound("no such route".into())),
        _ => Err(ApiError::MethodNotAllowed(allowed(route))),
    }
}

async fn json_object(
    state: &AppState,
    headers: &hyper::HeaderMap,
    incoming: Incoming,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = body::read(
        headers,
        incoming,
        state.settings.max_body_bytes,
        state.settings.body_read_timeout(),
    )
    .await?;
    Ok(body::json_object(&bytes)?)
}

/// A bulk request's whole body (`POST /users/bulk`, `POST /urls/bulk`), within
/// `GITREV_MAX_UPLOAD_BYTES`.
pub(crate) async fn upload(
    state: &AppState,
    headers: &hyper::HeaderMap,
    incoming: Incoming,
) -> Result<bytes::Bytes, ApiError> {
    Ok(body::read(
        headers,
        incoming,
        state.settings.max_upload_bytes,
        state.settings.body_read_timeout(),
    )
    .await?)
}

/// A list response: the rows as a JSON array, `x-total-count` and, when more rows exist,
/// `link: <…>; rel="next"`.
pub fn list_response<T: serde::Serialize>(
    path: &str,
    query: &Query<'_>,
    pagination: Pagination,
    rows: &[T],
    total: i64,
) -> Response {
    let mut response = response::json(StatusCode::OK, rows);
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-total-count"),
        HeaderValue::from(total),
    );
    if let Some(link) = pagination.next_link(path, query, total) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(hyper::header::LINK, value);
        }
    }
    response
}

/// A method name with a static lifetime, for labels.
pub fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::HEAD => "HEAD",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::PATCH => "PATCH",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
