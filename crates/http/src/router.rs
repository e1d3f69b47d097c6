//! Path → route, without allocating: the path is split on `/` into borrowed segments and matched
//! against the fixed API shape. Any single segment that is not a reserved name is a short code.

use gitrev_core::shortcode;

/// Where a request goes. Ids are parsed here; a non-numeric id is simply not a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Ready,
    Metrics,
    OpenApi,
    Users,
    UsersBulk,
    User(i64),
    Urls,
    UrlsBulk,
    Url(i64),
    UrlStats(i64),
    UrlTimeseries(i64),
    UrlBreakdown(i64),
    UrlClicksCsv(i64),
    UrlQrSvg(i64),
    UrlQrPng(i64),
    Events,
    Event(i64),
    Keys,
    Key(i64),
    Redirect(&'a str),
    NotFound,
}

impl Route<'_> {
    /// A fixed name for metrics and logs (never the raw path, which is unbounded).
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Users => "/users",
            Route::UsersBulk => "/users/bulk",
            Route::User(_) => "/users/{id}",
            Route::Urls => "/urls",
            Route::UrlsBulk => "/urls/bulk",
            Route::Url(_) => "/urls/{id}",
            Route::UrlStats(_) => "/urls/{id}/stats",
            Route::UrlTimeseries(_) => "/urls/{id}/stats/timeseries",
            Route::UrlBreakdown(_) => "/urls/{id}/stats/breakdown",
            Route::UrlClicksCsv(_) => "/urls/{id}/clicks.csv",
            Route::UrlQrSvg(_) => "/urls/{id}/qr.svg",
            Route::UrlQrPng(_) => "/urls/{id}/qr.png",
            Route::Events => "/events",
            Route::Event(_) => "/events/{id}",
            Route::Keys => "/keys",
            Route::Key(_) => "/keys/{id}",
            Route::Redirect(_) => "/{short_code}",
            Route::NotFound => "unmatched",
        }
    }
}

fn id(segment: &str) -> Option<i64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok().filter(|v| *v > 0)
}

/// Matches a request path (without the query string).
pub fn route(path: &str) -> Route<'_> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segments = path.split('/');
    let first = segments.next().unwrap_or("");
    let second = segments.next();
    let third = segments.next();
    let fourth = segments.next();
    if segments.next().is_some() {
        return Route::NotFound;
    }
    if let Some(fourth) = fourth {
        return match (first, second.and_then(id), third, fourth) {
            ("urls", Some(i), Some("stats"), "timeseries") => Route::UrlTimeseries(i),
            ("urls", Some(i), Some("stats"), "breakdown") => Route::UrlBreakdown(i),
            _ => Route::NotFound,
        };
    }
    match (first, second, third) {
        ("health", None, None) => Route::Health,
        ("ready", None, None) => Route::Ready,
        ("metrics", None, None) => Route::Metrics,
        ("openapi.json", None, None) => Route::OpenApi,
        ("users", None, None) => Route::Users,
        ("users", Some("bulk"), None) => Route::UsersBulk,
        ("users", Some(s), None) => id(s).map_or(Route::NotFound, Route::User),
        ("urls", None, None) => Route::Urls,
        ("urls", Some("bulk"), None) => Route::UrlsBulk,
        ("urls", Some(s), None) => id(s).map_or(Route::NotFound, Route::Url),
        ("urls", Some(s), Some("stats")) => id(s).map_or(Route::NotFound, Route::UrlStats),
        ("urls", Some(s), Some("clicks.csv")) => id(s).map_or(Route::NotFound, Route::UrlClicksCsv),
        ("urls", Some(s), Some("qr.svg")) => id(s).map_or(Route::NotFound, Route::UrlQrSvg),
        ("urls", Some(s), Some("qr.png")) => id(s).map_or(Route::NotFound, Route::UrlQrPng),
        ("events", None, None) => Route::Events,
        ("events", Some(s), None) => id(s).map_or(Route::NotFound, Route::Event),
        ("keys", None, None) => Route::Keys,
        ("keys", Some(s), None) => id(s).map_or(Route::NotFound, Route::Key),
        (code, None, None)
            if !code.is_empty()
                && code.len() <= shortcode::MAX_CUSTOM_LEN
                && code.bytes().all(shortcode::is_code_char)
                && !shortcode::is_reserved(code) =>
        {
            Route::Redirect(code)
        }
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_routes() {
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/ready"), Route::Ready);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/openapi.json"), Route::OpenApi);
        assert_eq!(route("/users"), Route::Users);
        assert_eq!(route("/users/"), Route::Users);
        assert_eq!(route("/users/bulk"), Route::UsersBulk);
        assert_eq!(route("/users/42"), Route::User(42));
        assert_eq!(route("/urls"), Route::Urls);
        assert_eq!(route("/urls/7"), Route::Url(7));
        assert_eq!(route("/urls/7/stats"), Route::UrlStats(7));
        assert_eq!(route("/urls/7/stats/timeseries"), Route::UrlTimeseries(7));
        assert_eq!(route("/urls/7/stats/breakdown"), Route::UrlBreakdown(7));
        assert_eq!(route("/urls/7/clicks.csv"), Route::UrlClicksCsv(7));
        assert_eq!(route("/urls/bulk"), Route::UrlsBulk);
        assert_eq!(route("/urls/7/qr.svg"), Route::UrlQrSvg(7));
        assert_eq!(route("/urls/7/qr.png"), Route::UrlQrPng(7));
        assert_eq!(route("/urls/7/qr.gif"), Route::NotFound);
        assert_eq!(route("/events"), Route::Events);
        assert_eq!(route("/events/9"), Route::Event(9));
        assert_eq!(route("/keys"), Route::Keys);
        assert_eq!(route("/keys/4"), Route::Key(4));
    }

    #[test]
    fn short_codes() {
        assert_eq!(route("/aB3xY9"), Route::Redirect("aB3xY9"));
        assert_eq!(route("/my-link_1"), Route::Redirect("my-link_1"));
        assert_eq!(route("/aB3xY9/"), Route::Redirect("aB3xY9"));
    }

    #[test]
    fn everything_else_is_not_found() {
        for path in [
            "/",
            "",
            "//",
            "/users/abc",
            "/users/0",
            "/users/-1",
            "/users/99999999999999999999",
            "/users/1/x",
            "/urls/1/stats/x",
            "/urls/x/stats/timeseries",
            "/urls/1/stats/timeseries/x",
            "/users/1/stats/breakdown",
            "/urls/1/clicks.json",
            "/a/b/c/d/e",
            "/openapi.json/x",
            "/openapi.yaml",
            "/OpenAPI.json",
            "/favicon.ico",
            "/api",
            "/bad%20code",
            "/with.dot",
            &format!("/{}", "x".repeat(33)),
        ] {
            assert_eq!(route(path), Route::NotFound, "{path:?}");
        }
    }

    #[test]
    fn reserved_names_are_never_codes() {
        for name in shortcode::RESERVED {
            assert!(
                !matches!(route(&format!("/{name}")), Route::Redirect(_)),
                "{name}"
            );
        }
    }
}
