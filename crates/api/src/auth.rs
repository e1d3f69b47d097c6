//! Who may do what: the scope each route and method needs, checked in one place
//! ([`crate::dispatch`]) against the replica's keyring (`gitrev_links::keys`).
//!
//! Public whatever the keys: the redirect, `/health`, `/ready`, `/openapi.json` and `/metrics`
//! (which needs `GITREV_METRICS_TOKEN` when that is set; API keys do not open it), and paths that
//! are no route (404). Every GET of the API needs `read`; every change to users,
//! urls and events `write`; the keys and `POST /users/bulk` `admin`. Without a valid key: 401 with
//! `www-authenticate: Bearer`; a valid key without the scope: 403. Every keyed request takes one
//! from its key's rate-limit bucket (a refused one too, so hammering with the wrong scope is
//! limited as well): over it, 429 with `retry-after`.

use gitrev_http::router::Route;
use gitrev_links::keys::{Access, RateStanding};
use gitrev_store::keys::Scope;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::{HeaderMap, Method};

use crate::error::ApiError;
use crate::AppState;

/// The scope a request needs; `None` when it is public. `method` is GET for a HEAD.
pub fn scope_needed(route: Route<'_>, method: &Method) -> Option<Scope> {
    match route {
        Route::Redirect(_)
        | Route::Health
        | Route::Ready
        | Route::Metrics
        | Route::OpenApi
        | Route::NotFound => None,
        Route::Keys | Route::Key(_) | Route::UsersBulk => Some(Scope::Admin),
        _ if *method == Method::GET => Some(Scope::Read),
        _ => Some(Scope::Write),
    }
}

/// The credential of `authorization: Bearer <key>` (the scheme in any letter case).
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, presented) = value.split_first_chunk::<7>()?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| presented.trim_ascii())
}

/// Lets the request through — with the user its key is bound to, if it is — or answers 401/403
/// (503 when the keys cannot be read) or 429 (the key's rate limit). A keyed request's standing
/// with its limit goes to `standing`, for the answer's `ratelimit-*` headers, whatever the answer.
pub async fn authorize(
    state: &AppState,
    route: Route<'_>,
    method: &Method,
    headers: &HeaderMap,
    standing: &mut Option<RateStanding>,
) -> Result<Option<i64>, ApiError> {
    if route == Route::Metrics && !state.keyring.admits_metrics(bearer(headers)) {
        return Err(ApiError::Unauthorized);
    }
    let Some(needed) = scope_needed(route, method) else {
        return Ok(None);
    };
    let grant = match state.keyring.check(bearer(headers)).await? {
        Access::Open => return Ok(None),
        Access::Denied => return Err(ApiError::Unauthorized),
        Access::Granted(grant) => grant,
    };
    let taken = state.keyring.take(&grant);
    *standing = Some(taken);
    if let Some(seconds) = taken.retry_after_secs {
        return Err(ApiError::TooManyRequests(seconds));
    }
    if grant.scope < needed {
        return Err(ApiError::Forbidden(needed));
    }
    Ok(grant.user_id)
}

/// The `ratelimit-*` headers of a keyed request's answer.
pub fn rate_headers(standing: &RateStanding) -> [(HeaderName, HeaderValue); 3] {
    [
        (RATELIMIT_LIMIT, HeaderValue::from(standing.limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(standing.remaining)),
        (RATELIMIT_RESET, HeaderValue::from(standing.reset_secs)),
    ]
}

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("a visible header value"),
        );
        headers
    }

    #[test]
    fn only_a_bearer_credential_is_taken() {
        for (header, expected) in [
            ("Bearer gk_abc", Some(&b"gk_abc"[..])),
            ("bearer gk_abc ", Some(&b"gk_abc"[..])),
            ("BEARER gk_abc", Some(&b"gk_abc"[..])),
            ("Bearer ", Some(&b""[..])),
            ("Bearer", None),
            ("Basic Z2tfYWJj", None),
            ("gk_abc", None),
        ] {
            assert_eq!(bearer(&with_authorization(header)), expected, "{header:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn scopes_follow_the_route_and_the_method() {
        assert_eq!(scope_needed(Route::Redirect("abc"), &Method::GET), None);
        assert_eq!(scope_needed(Route::Health, &Method::GET), None);
        assert_eq!(scope_needed(Route::NotFound, &Method::POST), None);
        assert_eq!(scope_needed(Route::Urls, &Method::GET), Some(Scope::Read));
        assert_eq!(scope_needed(Route::Urls, &Method::POST), Some(Scope::Write));
        assert_eq!(
            scope_needed(Route::Url(1), &Method::DELETE),
            Some(Scope::Write)
        );
        assert_eq!(
            scope_needed(Route::UsersBulk, &Method::POST),
            Some(Scope::Admin)
        );
        assert_eq!(scope_needed(Route::Keys, &Method::GET), Some(Scope::Admin));
        assert_eq!(
            scope_needed(Route::Key(3), &Method::DELETE),
            Some(Scope::Admin)
        );
    }
}
