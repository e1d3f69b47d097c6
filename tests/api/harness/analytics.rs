//! Click analytics (issue #9): user agents whose classification is known, clicks imported through
//! `gitrev seed --dir` at the times a test chooses, a server of the analytics tests' own, and the
//! analytics reads (`stats`, `stats/timeseries`, `stats/breakdown`, `clicks.csv`).
//!
//! Imports go to databases of the analytics tests' own, never to the shared one: an import moves
//! the id sequences past its rows (`sequences::fix`), which must not race with the inserts of the
//! rest of the suite. Imports into the analytics server's database are serialized for the same
//! reason ([`import_analytics`]); nothing else writes clicks there.

use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::NaiveDateTime;
use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::db::{assert_cli_ok, gitrev, migrated_database, output_text};
use super::fixtures::{create_url_on, create_user_on, id_of, str_of, unique_original_url};
use super::server::{start_server_on, TestDir, TestServer};
use super::shapes::assert_json_content_type;

/// A user agent and how the service classifies it (uap-core families, isbot list; see
/// `crates/classify/README.md`). `None`: no `user-agent` header at all, which is a bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agent {
    pub ua: Option<&'static str>,
    pub bot: bool,
    pub browser: &'static str,
    pub os: &'static str,
    pub device: &'static str,
}

pub const CHROME_WINDOWS: Agent = Agent {
    ua: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    bot: false,
    browser: "Chrome",
    os: "Windows",
    device: "desktop",
};
pub const FIREFOX_LINUX: Agent = Agent {
    ua: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    bot: false,
    browser: "Firefox",
    os: "Linux",
    device: "desktop",
};
pub const IPHONE: Agent = Agent {
    ua: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    bot: false,
    browser: "Mobile Safari",
    os: "iOS",
    device: "mobile",
};
pub const IPAD: Agent = Agent {
    ua: Some("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    bot: false,
    browser: "Mobile Safari",
    os: "iOS",
    device: "tablet",
};
pub const GOOGLEBOT: Agent = Agent {
    ua: Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    bot: true,
    browser: "Googlebot",
    os: "Other",
    device: "bot",
};
pub const CURL: Agent = Agent {
    ua: Some("curl/8.5.0"),
    bot: true,
    browser: "curl",
    os: "Other",
    device: "bot",
};
pub const NO_AGENT: Agent = Agent {
    ua: None,
    bot: true,
    browser: "Other",
    os: "Other",
    device: "bot",
};

/// Every agent above, for drawing at random.
pub const AGENTS: [Agent; 7] = [
    CHROME_WINDOWS,
    FIREFOX_LINUX,
    IPHONE,
    IPAD,
    GOOGLEBOT,
    CURL,
    NO_AGENT,
];

/// `YYYY-MM-DD HH:MM:SS[.f]` (the seed files' form) or `YYYY-MM-DDTHH:MM:SS[.f]` as a moment.
pub fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .unwrap_or_else(|e| panic!("{text:?} is not a timestamp: {e}"))
}

/// The API's rendering of a moment: `YYYY-MM-DDTHH:MM:SS`, the fraction cut off.
pub fn api_time(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// One click event of an `events.csv`.
#[derive(Clone, Debug)]
pub struct ClickRow {
    /// `None`: the import takes the next id of the events sequence.
    pub id: Option<i64>,
    pub url_id: i64,
    pub user_id: Option<i64>,
    pub at: NaiveDateTime,
    pub details: Value,
}

impl ClickRow {
    /// A click of `url_id` at `at` with `agent` and `referrer` (each left out of `details` when
    /// `None`).
    pub fn new(url_id: i64, at: NaiveDateTime, agent: Agent, referrer: Option<&str>) -> ClickRow {
        let mut details = serde_json::Map::new();
        if let Some(ua) = agent.ua {
            details.insert("user_agent".into(), json!(ua));
        }
        if let Some(referrer) = referrer {
            details.insert("referrer".into(), json!(referrer));
        }
        ClickRow {
            id: None,
            url_id,
            user_id: None,
            at,
            details: Value::Object(details),
        }
    }
}

/// A field as RFC 4180 writes it: quoted (quotes doubled) when it holds a comma, a quote or a
/// line break.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A seed set to import: users `(id, username, email)`, urls `(id, user_id, short_code,
/// original_url)` and click events.
#[derive(Default)]
pub struct SeedSet {
    pub users: Vec<(i64, String, String)>,
    pub urls: Vec<(i64, Option<i64>, String, String)>,
    pub clicks: Vec<ClickRow>,
}

impl SeedSet {
    pub fn clicks(clicks: Vec<ClickRow>) -> SeedSet {
        SeedSet {
            clicks,
            ..SeedSet::default()
        }
    }

    /// Writes `users.csv`, `urls.csv` and `events.csv` into `dir`.
    pub fn write(&self, dir: &TestDir) {
        let mut users = String::from("id,username,email,created_at\n");
        for (id, name, email) in &self.users {
            let _ = writeln!(users, "{id},{name},{email},2026-01-01 00:00:00");
        }
        let mut urls = String::from(
            "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n",
        );
        for (id, user, code, target) in &self.urls {
            let user = user.map(|u| u.to_string()).unwrap_or_default();
            let _ = writeln!(
                urls,
                "{id},{user},{code},{},,True,2026-01-01 00:00:00,2026-01-01 00:00:00",
                csv_field(target)
            );
        }
        let mut events = String::with_capacity(self.clicks.len() * 120);
        events.push_str("id,url_id,user_id,event_type,timestamp,details\n");
        for click in &self.clicks {
            let id = click.id.map(|i| i.to_string()).unwrap_or_default();
            let user = click.user_id.map(|u| u.to_string()).unwrap_or_default();
            let _ = writeln!(
                events,
                "{id},{},{user},click,{},{}",
                click.url_id,
                click.at.format("%Y-%m-%d %H:%M:%S%.f"),
                csv_field(&click.details.to_string())
            );
        }
        for (name, text) in [
            ("users.csv", users),
            ("urls.csv", urls),
            ("events.csv", events),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }
}

/// Imports `set` into `database_url` with `gitrev seed --dir`, checking that every row was
/// taken; the command's output.
pub fn import_into(database_url: &str, set: &SeedSet) -> String {
    let dir = TestDir::new("clicks");
    set.write(&dir);
    let output = gitrev(&["seed", "--dir", dir.as_str()], database_url);
    assert_cli_ok(&output, "gitrev seed --dir (clicks)");
    let text = output_text(&output);
    for (name, n) in [
        ("users", set.users.len()),
        ("urls", set.urls.len()),
        ("events", set.clicks.len()),
    ] {
        let line = format!("{name}: {n} written, 0 skipped");
        assert!(text.contains(&line), "expected {line:?} in:\n{text}");
    }
    text
}

/// The server the analytics tests share: its own database, written only by imports (which this
/// module serializes), so an imported click's id is the next of the sequence, in file order.
pub async fn analytics_server() -> &'static TestServer {
    static SERVER: OnceCell<TestServer> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let url = migrated_database("analytics").await;
            start_server_on(&url, &[])
        })
        .await
}

/// Imports click events into the analytics server's database, one import at a time.
pub async fn import_analytics(clicks: Vec<ClickRow>) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let database_url = analytics_server().await.database_url.clone();
    let set = SeedSet::clicks(clicks);
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    import_into(&database_url, &set);
}

/// A fresh url (owned by a fresh user) on `srv`: its id and short code.
pub async fn new_url_on(srv: &TestServer, c: &Client) -> (i64, String) {
    let user = create_user_on(srv, c).await;
    let url = create_url_on(
        srv,
        c,
        json!({"original_url": unique_original_url(), "user_id": id_of(&user)}),
    )
    .await;
    (id_of(&url), str_of(&url, "short_code").to_string())
}

/// `GET path` on `srv`: a 200 JSON body.
pub async fn get_json(srv: &TestServer, c: &Client, path: &str) -> Value {
    let reply = srv.get(c, path).await.expect(200, &format!("GET {path}"));
    assert_json_content_type(&reply);
    reply.json
}

/// `GET /urls/{id}/stats`: `(clicks, bot_clicks)`.
pub async fn stats(srv: &TestServer, c: &Client, url_id: i64) -> (i64, i64) {
    let body = get_json(srv, c, &format!("/urls/{url_id}/stats")).await;
    let n = |k: &str| {
        body[k]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer {k} in {body}"))
    };
    (n("clicks"), n("bot_clicks"))
}

/// `GET /urls/{id}/stats/timeseries?query`: the body, its points checked for shape.
pub async fn timeseries(srv: &TestServer, c: &Client, url_id: i64, query: &str) -> Value {
    let body = get_json(srv, c, &format!("/urls/{url_id}/stats/timeseries?{query}")).await;
    assert_eq!(body["url_id"], url_id, "url_id of {body}");
    for point in body["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {body}"))
    {
        assert!(
            point["start"].is_string() && point["clicks"].is_i64(),
            "a point is {{start, clicks}}: {point}"
        );
    }
    body
}

/// The points of a timeseries body as `(start, clicks)`.
pub fn points(body: &Value) -> Vec<(String, i64)> {
    body["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points in {body}"))
        .iter()
        .map(|p| {
            (
                p["start"].as_str().unwrap_or_default().to_string(),
                p["clicks"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// The points with clicks (the others must be 0: checked by the caller through `points`).
pub fn nonzero(body: &Value) -> Vec<(String, i64)> {
    points(body).into_iter().filter(|p| p.1 != 0).collect()
}

/// `GET /urls/{id}/stats/breakdown?query`: the body.
pub async fn breakdown(srv: &TestServer, c: &Client, url_id: i64, query: &str) -> Value {
    let body = get_json(srv, c, &format!("/urls/{url_id}/stats/breakdown?{query}")).await;
    assert_eq!(body["url_id"], url_id, "url_id of {body}");
    body
}

/// The rows of a breakdown body as `(value, clicks)`.
pub fn rows(body: &Value) -> Vec<(String, i64)> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap_or_default().to_string(),
                r["clicks"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// `GET /urls/{id}/clicks.csv?query`: a 200 `text/csv` attachment, its body.
pub async fn export_csv(srv: &TestServer, c: &Client, url_id: i64, query: &str) -> String {
    let reply = srv
        .get(c, &format!("/urls/{url_id}/clicks.csv?{query}"))
        .await
        .expect(200, "GET clicks.csv");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/csv"),
        "clicks.csv is text/csv, got {content_type:?}"
    );
    let disposition = reply.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment"),
        "clicks.csv is an attachment, got {disposition:?}"
    );
    reply.text
}

/// The header line of `clicks.csv`.
pub const CSV_HEADER: &str = "id,timestamp,referrer,user_agent,browser,os,device,bot\n";

/// The `clicks.csv` line of a click, as the contract describes it.
pub fn csv_line(id: i64, at: NaiveDateTime, agent: Agent, referrer: Option<&str>) -> String {
    format!(
        "{id},{},{},{},{},{},{},{}\n",
        api_time(at),
        csv_field(referrer.unwrap_or("")),
        csv_field(agent.ua.unwrap_or("")),
        csv_field(agent.browser),
        csv_field(agent.os),
        csv_field(agent.device),
        agent.bot
    )
}

/// The resident memory of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}
