//! Clicks at volume (issue #9), through real sockets on the real database: the events contract
//! with clicks from every source, the timeseries and breakdowns the rollups answer, bot
//! filtering, UTC day boundaries, retention, a url deleted while its click waited, the CSV export
//! (byte-exact, and streamed with flat memory), the migration of an old database's clicks, and a
//! property test that the rollups equal counts of the raw clicks.
//!
//! Clicks at chosen times are imported (`gitrev seed --dir`) into databases of these tests' own
//! (see `harness::analytics`); each test owns its urls, so its counts are exact.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Duration as Span, NaiveDateTime, Timelike, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::harness::analytics::{
    analytics_server, api_time, at, breakdown, csv_line, export_csv, get_json, import_analytics,
    import_into, new_url_on, nonzero, points, rows, rss_kib, stats, timeseries, Agent, ClickRow,
    SeedSet, AGENTS, CHROME_WINDOWS, CSV_HEADER, CURL, FIREFOX_LINUX, GOOGLEBOT, IPAD, IPHONE,
    NO_AGENT,
};
use crate::harness::{
    assert_error, assert_event, assert_invalid_field, client, code_path, connect, create_url_on,
    create_user_on, fresh_database, gitrev, id_of, is_timestamp, migrated_database, output_text,
    poll, read_metric, read_reply, scrape, server, settle_clicks, start_server_on, str_of, unique,
    unique_original_url, TestServer, MISSING_ID,
};

fn ua(agent: Agent) -> &'static str {
    agent.ua.expect("an agent with a user agent")
}

/// `GET path` on `srv`: the array, every element an event.
async fn event_list(srv: &TestServer, c: &reqwest::Client, path: &str) -> Vec<Value> {
    let reply = srv.get(c, path).await.expect(200, &format!("GET {path}"));
    let list = reply.array().clone();
    for event in &list {
        assert_event(event);
    }
    list
}

fn ids(list: &[Value]) -> Vec<i64> {
    list.iter().map(id_of).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. The events contract with clicks from a redirect, POST /events and an import.

#[tokio::test]
async fn clicks_from_every_source_are_listed_like_any_event() {
    let db = migrated_database("anaevents").await;
    let srv = start_server_on(&db, &[]);
    let c = client();
    let user = create_user_on(&srv, &c).await;
    let user_id = id_of(&user);
    let target = unique_original_url();
    let url = create_url_on(
        &srv,
        &c,
        json!({"original_url": target, "user_id": user_id}),
    )
    .await;
    let (url_id, code) = (id_of(&url), str_of(&url, "short_code").to_string());

    // A redirect, by a browser, from a page.
    read_reply(
        c.get(srv.url(&format!("/{code}")))
            .header("user-agent", ua(CHROME_WINDOWS))
            .header("referer", "https://News.Example.com/item?id=1"),
    )
    .await
    .expect(302, "redirect");
    settle_clicks(&srv).await;
    // An ordinary event in between: clicks and events share one id space.
    srv.patch(&c, &format!("/urls/{url_id}"), &json!({"title": "Renamed"}))
        .await
        .expect(200, "PATCH /urls/{id}");
    // A posted click: its details are kept, its `bot` replaced by the classification.
    let posted = srv
        .post(
            &c,
            "/events",
            &json!({"event_type": "click", "url_id": url_id, "user_id": user_id,
                    "details": {"user_agent": ua(GOOGLEBOT), "campaign": "spring", "bot": false}}),
        )
        .await
        .expect(201, "POST /events (click)");
    assert_event(&posted.json);
    assert_eq!(
        posted.json["details"],
        json!({"user_agent": ua(GOOGLEBOT), "campaign": "spring", "bot": true}),
        "a posted click keeps its details; `bot` is the classification"
    );
    // Two imported clicks, one with a fraction of a second.
    let mut imported_a = ClickRow::new(url_id, at("2026-11-20 10:00:00.5"), CURL, None);
    imported_a.user_id = Some(user_id);
    imported_a.details = json!({"short_code": code, "original_url": target,
                                "user_agent": ua(CURL), "referrer": "https://lobste.rs/"});
    let imported_b = ClickRow::new(url_id, at("2026-11-21 08:30:00"), NO_AGENT, None);
    import_into(&db, &SeedSet::clicks(vec![imported_a, imported_b]));

    let listed = event_list(&srv, &c, &format!("/events?url_id={url_id}")).await;
    let types: Vec<&str> = listed
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        ["created", "click", "updated", "click", "click", "click"],
        "the url's events in recording order: {listed:?}"
    );
    let listed_ids = ids(&listed);
    assert!(
        listed_ids.windows(2).all(|w| w[0] < w[1]),
        "ids are unique and increase in recording order: {listed_ids:?}"
    );
    let redirect = &listed[1];
    assert_eq!(
        redirect["user_id"], user_id,
        "a redirect's click is the owner's"
    );
    assert_eq!(
        redirect["details"],
        json!({"short_code": code, "original_url": target, "user_agent": ua(CHROME_WINDOWS),
               "referrer": "https://News.Example.com/item?id=1", "bot": false})
    );
    assert_eq!(
        listed[3], posted.json,
        "the posted click reads back as it was answered"
    );
    assert_eq!(listed[4]["user_id"], user_id);
    assert_eq!(listed[4]["timestamp"], "2026-11-20T10:00:00");
    assert_eq!(
        listed[4]["details"],
        json!({"short_code": code, "original_url": target, "user_agent": ua(CURL),
               "referrer": "https://lobste.rs/", "bot": true})
    );
    assert_eq!(listed[5]["user_id"], Value::Null);
    assert_eq!(listed[5]["timestamp"], "2026-11-21T08:30:00");
    assert_eq!(
        listed[5]["details"],
        json!({"bot": true}),
        "no user agent: a bot"
    );
    for event in &listed {
        let one = get_json(&srv, &c, &format!("/events/{}", id_of(event))).await;
        assert_eq!(&one, event, "GET /events/{{id}} is the listed event");
    }

    // Filters, alone and combined.
    let clicks = event_list(&srv, &c, "/events?event_type=click").await;
    assert_eq!(
        ids(&clicks),
        [listed_ids[1], listed_ids[3], listed_ids[4], listed_ids[5]],
        "the database's clicks, from all three sources"
    );
    let by_user = event_list(&srv, &c, &format!("/events?user_id={user_id}")).await;
    let owned: Vec<i64> = listed
        .iter()
        .filter(|e| e["user_id"] == user_id)
        .map(id_of)
        .collect();
    assert_eq!(ids(&by_user), owned, "?user_id= lists the user's events");
    let combined = event_list(
        &srv,
        &c,
        &format!("/events?url_id={url_id}&user_id={user_id}&event_type=click"),
    )
    .await;
    assert_eq!(
        ids(&combined),
        [listed_ids[1], listed_ids[3], listed_ids[4]]
    );

    // Pagination through clicks.
    let first = srv
        .get(&c, "/events?event_type=click&page=1&per_page=3")
        .await
        .expect(200, "page 1");
    assert_eq!(first.total_count(), 4);
    assert_eq!(ids(first.array()), ids(&clicks[..3]));
    let link = first
        .header("link")
        .unwrap_or_else(|| panic!("no link header on page 1 of 2"));
    for part in ["event_type=click", "page=2", "per_page=3", "rel=\"next\""] {
        assert!(link.contains(part), "link {link:?} has {part}");
    }
    let second = srv
        .get(&c, "/events?event_type=click&page=2&per_page=3")
        .await
        .expect(200, "page 2");
    assert_eq!(second.total_count(), 4);
    assert_eq!(ids(second.array()), ids(&clicks[3..]));
    assert!(
        second
            .header("link")
            .is_none_or(|l| !l.contains("rel=\"next\"")),
        "no next page after the last: {:?}",
        second.header("link")
    );

    assert_eq!(
        stats(&srv, &c, url_id).await,
        (4, 3),
        "(clicks, bot_clicks)"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Timeseries.

#[tokio::test]
async fn the_timeseries_sums_to_clicks_and_empty_buckets_are_zero() {
    let srv = analytics_server().await;
    let c = client();
    let (url_id, _) = new_url_on(srv, &c).await;
    import_analytics(vec![
        ClickRow::new(url_id, at("2026-11-10 05:10:00"), CHROME_WINDOWS, None),
        ClickRow::new(url_id, at("2026-11-10 05:50:59.999"), IPHONE, None),
        ClickRow::new(url_id, at("2026-11-10 07:00:00"), FIREFOX_LINUX, None),
        ClickRow::new(url_id, at("2026-11-12 23:30:00"), GOOGLEBOT, None),
    ])
    .await;
    let (clicks, bot_clicks) = stats(srv, &c, url_id).await;
    assert_eq!((clicks, bot_clicks), (4, 1));

    let hourly = timeseries(
        srv,
        &c,
        url_id,
        "interval=hour&from=2026-11-10T04:00:00&to=2026-11-10T08:59:59",
    )
    .await;
    assert_eq!(hourly["interval"], "hour");
    assert_eq!(hourly["from"], "2026-11-10T04:00:00");
    assert_eq!(hourly["to"], "2026-11-10T08:59:59");
    assert_eq!(
        points(&hourly),
        [
            ("2026-11-10T04:00:00".to_string(), 0),
            ("2026-11-10T05:00:00".to_string(), 2),
            ("2026-11-10T06:00:00".to_string(), 0),
            ("2026-11-10T07:00:00".to_string(), 1),
            ("2026-11-10T08:00:00".to_string(), 0),
        ]
    );
    let daily = timeseries(
        srv,
        &c,
        url_id,
        "interval=day&from=2026-11-09&to=2026-11-13T12:00:00",
    )
    .await;
    assert_eq!(daily["interval"], "day");
    let daily_points = points(&daily);
    assert_eq!(
        daily_points,
        [
            ("2026-11-09T00:00:00".to_string(), 0),
            ("2026-11-10T00:00:00".to_string(), 3),
            ("2026-11-11T00:00:00".to_string(), 0),
            ("2026-11-12T00:00:00".to_string(), 1),
            ("2026-11-13T00:00:00".to_string(), 0),
        ]
    );
    assert_eq!(
        daily_points.iter().map(|p| p.1).sum::<i64>(),
        clicks,
        "over all its clicks, the timeseries sums to `clicks`"
    );
    let all_hours = timeseries(
        srv,
        &c,
        url_id,
        "from=2026-11-09T00:00:00&to=2026-11-13T00:00:00",
    )
    .await;
    assert_eq!(points(&all_hours).len(), 4 * 24 + 1, "hour is the default");
    assert_eq!(points(&all_hours).iter().map(|p| p.1).sum::<i64>(), clicks);
    assert_eq!(
        nonzero(&all_hours),
        [
            ("2026-11-10T05:00:00".to_string(), 2),
            ("2026-11-10T07:00:00".to_string(), 1),
            ("2026-11-12T23:00:00".to_string(), 1),
        ]
    );
    let humans = timeseries(
        srv,
        &c,
        url_id,
        "interval=day&from=2026-11-09&to=2026-11-13&bots=exclude",
    )
    .await;
    assert_eq!(
        points(&humans).iter().map(|p| p.1).sum::<i64>(),
        clicks - bot_clicks,
        "bots=exclude leaves out the crawler"
    );
    // A range inside one bucket: the bucket holding `from`.
    let inside = timeseries(
        srv,
        &c,
        url_id,
        "from=2026-11-10T05:30:00Z&to=2026-11-10T05:31:00.5",
    )
    .await;
    assert_eq!(points(&inside), [("2026-11-10T05:00:00".to_string(), 2)]);
}

#[tokio::test]
async fn the_timeseries_defaults_to_24_hours_or_30_days_ending_now() {
    let c = client();
    let (url_id, code) = new_url_on(server(), &c).await;
    server()
        .get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect");
    settle_clicks(server()).await;
    let before = Utc::now().naive_utc();
    let hourly = timeseries(server(), &c, url_id, "").await;
    let daily = timeseries(server(), &c, url_id, "interval=day").await;
    let after = Utc::now().naive_utc();

    let hour_of = |t: NaiveDateTime| api_time(t.date().and_hms_opt(t.hour(), 0, 0).expect("hour"));
    let hours = points(&hourly);
    assert_eq!(hourly["interval"], "hour");
    assert_eq!(hours.len(), 24, "24 points by hour: {hourly}");
    let last = &hours[23].0;
    assert!(
        [hour_of(before), hour_of(after)].contains(last),
        "the last hour is the current one: {last}"
    );
    let to = hourly["to"].as_str().unwrap_or_default();
    assert!(is_timestamp(to), "`to` is a timestamp: {hourly}");
    assert!(
        (api_time(before).as_str()..=api_time(after).as_str()).contains(&to),
        "`to` is now: {to}"
    );
    for pair in hours.windows(2) {
        assert_eq!(
            at(&pair[1].0) - at(&pair[0].0),
            Span::hours(1),
            "hourly points, oldest first"
        );
    }
    assert_eq!(
        hours.iter().map(|p| p.1).sum::<i64>(),
        1,
        "the redirect's click is in the last 24 hours: {hourly}"
    );

    let days = points(&daily);
    assert_eq!(days.len(), 30, "30 points by day: {daily}");
    assert!(
        [before.date(), after.date()]
            .map(|d| api_time(d.and_hms_opt(0, 0, 0).expect("midnight")))
            .contains(&days[29].0),
        "the last day is today: {}",
        days[29].0
    );
    assert_eq!(at(&days[29].0) - at(&days[0].0), Span::days(29));
    assert_eq!(days.iter().map(|p| p.1).sum::<i64>(), 1);
    assert_eq!(
        stats(server(), &c, url_id).await,
        (1, 1),
        "reqwest sends no user agent: a bot"
    );
    let humans = timeseries(server(), &c, url_id, "bots=exclude").await;
    assert_eq!(points(&humans).iter().map(|p| p.1).sum::<i64>(), 0);
}

#[tokio::test]
async fn timeseries_parameters_are_validated() {
    let c = client();
    let (url_id, _) = new_url_on(server(), &c).await;
    let path = |query: &str| format!("/urls/{url_id}/stats/timeseries?{query}");
    for (query, field) in [
        ("interval=week", "interval"),
        ("interval=", "interval"),
        ("bots=maybe", "bots"),
        ("from=yesterday", "from"),
        ("from=2026-11-31", "from"),
        ("to=2026-13-01T00:00:00", "to"),
        ("to=12", "to"),
        ("from=2026-11-02&to=2026-11-01T23:59:59", "from"),
        ("from=2025-01-01&to=2026-12-01", "from"),
    ] {
        let reply = server().get(&c, &path(query)).await;
        assert_invalid_field(&reply, field);
    }
    // At most 10,000 buckets: 10,000 is fine, one more is not.
    let start = at("2025-06-01 00:00:00");
    let edge = start + Span::hours(9_999);
    let query = format!("from={}&to={}", api_time(start), api_time(edge));
    let widest = timeseries(server(), &c, url_id, &query).await;
    assert_eq!(points(&widest).len(), 10_000);
    let beyond = format!(
        "from={}&to={}",
        api_time(start),
        api_time(edge + Span::hours(1))
    );
    assert_invalid_field(&server().get(&c, &path(&beyond)).await, "from");
    let days = format!(
        "interval=day&from=2000-01-01&to={}",
        api_time(at("2000-01-01 00:00:00") + Span::days(10_000))
    );
    assert_invalid_field(&server().get(&c, &path(&days)).await, "from");

    let missing = server()
        .get(&c, &format!("/urls/{MISSING_ID}/stats/timeseries"))
        .await;
    assert_error(&missing, 404, "not_found");
    let missing = server()
        .get(
            &c,
            &format!("/urls/{MISSING_ID}/stats/timeseries?interval=day&bots=exclude"),
        )
        .await;
    assert_error(&missing, 404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// 3. Bots and breakdowns.

#[tokio::test]
async fn bots_exclude_drops_crawlers_and_breakdowns_count_each_value() {
    let srv = analytics_server().await;
    let c = client();
    let (url_id, _) = new_url_on(srv, &c).await;
    let mut clicks = Vec::new();
    let mut add = |n: usize, agent: Agent, referrer: Option<&str>, minute: u32| {
        for i in 0..n {
            let when = at("2026-11-15 10:00:00") + Span::minutes(i64::from(minute) + i as i64);
            clicks.push(ClickRow::new(url_id, when, agent, referrer));
        }
    };
    add(3, CHROME_WINDOWS, Some("https://News.Example.COM/a?b=c"), 0);
    add(2, IPHONE, None, 5);
    add(1, FIREFOX_LINUX, Some("https://news.example.com/b"), 10);
    add(4, GOOGLEBOT, None, 15);
    add(2, IPAD, Some("https://t.co/x"), 20);
    add(1, NO_AGENT, Some("https://t.co/y"), 25);
    import_analytics(clicks).await;
    assert_eq!(stats(srv, &c, url_id).await, (13, 5));

    let day = "from=2026-11-15T10:00:00&to=2026-11-15T11:00:00";
    let series = |bots: &str| format!("interval=day&{day}&bots={bots}");
    let all = timeseries(srv, &c, url_id, &series("include")).await;
    assert_eq!(points(&all), [("2026-11-15T00:00:00".to_string(), 13)]);
    let humans = timeseries(srv, &c, url_id, &series("exclude")).await;
    assert_eq!(points(&humans), [("2026-11-15T00:00:00".to_string(), 8)]);
    let hourly = timeseries(srv, &c, url_id, &format!("{day}&bots=exclude")).await;
    assert_eq!(
        points(&hourly),
        [
            ("2026-11-15T10:00:00".to_string(), 8),
            ("2026-11-15T11:00:00".to_string(), 0)
        ]
    );

    let expect = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
        pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
    };
    let cases = [
        (
            "referrer",
            "include",
            expect(&[("direct", 6), ("news.example.com", 4), ("t.co", 3)]),
        ),
        (
            "referrer",
            "exclude",
            expect(&[("news.example.com", 4), ("direct", 2), ("t.co", 2)]),
        ),
        (
            "browser",
            "include",
            expect(&[
                ("Googlebot", 4),
                ("Mobile Safari", 4),
                ("Chrome", 3),
                ("Firefox", 1),
                ("Other", 1),
            ]),
        ),
        (
            "browser",
            "exclude",
            expect(&[("Mobile Safari", 4), ("Chrome", 3), ("Firefox", 1)]),
        ),
        (
            "os",
            "include",
            expect(&[("Other", 5), ("iOS", 4), ("Windows", 3), ("Linux", 1)]),
        ),
        (
            "os",
            "exclude",
            expect(&[("iOS", 4), ("Windows", 3), ("Linux", 1)]),
        ),
        (
            "device",
            "include",
            expect(&[("bot", 5), ("desktop", 4), ("mobile", 2), ("tablet", 2)]),
        ),
        (
            "device",
            "exclude",
            expect(&[("desktop", 4), ("mobile", 2), ("tablet", 2)]),
        ),
    ];
    for (by, bots, want) in cases {
        let body = breakdown(srv, &c, url_id, &format!("by={by}&{day}&bots={bots}")).await;
        assert_eq!(body["by"], by);
        assert_eq!(body["from"], "2026-11-15T00:00:00", "widened to the day");
        assert_eq!(body["to"], "2026-11-15T23:59:59", "widened to the day");
        assert_eq!(rows(&body), want, "by={by}, bots={bots}: {body}");
    }
    let default_bots = breakdown(srv, &c, url_id, &format!("by=device&{day}")).await;
    assert_eq!(
        rows(&default_bots)[0],
        ("bot".to_string(), 5),
        "bots are included by default"
    );
    let top = breakdown(srv, &c, url_id, &format!("by=browser&{day}&limit=2")).await;
    assert_eq!(
        rows(&top),
        expect(&[("Googlebot", 4), ("Mobile Safari", 4)])
    );
    let one = breakdown(
        srv,
        &c,
        url_id,
        &format!("by=device&{day}&bots=exclude&limit=1"),
    )
    .await;
    assert_eq!(rows(&one), expect(&[("desktop", 4)]));
    let other_day = breakdown(srv, &c, url_id, "by=os&from=2026-11-16&to=2026-11-20").await;
    assert_eq!(rows(&other_day), [], "no click on those days");

    let path = |query: &str| format!("/urls/{url_id}/stats/breakdown?{query}");
    for (query, field) in [
        ("", "by"),
        ("by=country", "by"),
        ("by=", "by"),
        ("by=os&limit=0", "limit"),
        ("by=os&limit=1001", "limit"),
        ("by=os&limit=ten", "limit"),
        ("by=os&bots=no", "bots"),
        ("by=os&from=2026-11-16&to=2026-11-15", "from"),
        ("by=os&to=soon", "to"),
    ] {
        assert_invalid_field(&srv.get(&c, &path(query)).await, field);
    }
    let most = breakdown(srv, &c, url_id, &format!("by=os&{day}&limit=1000")).await;
    assert_eq!(rows(&most).len(), 4);
    let missing = srv
        .get(&c, &format!("/urls/{MISSING_ID}/stats/breakdown?by=os"))
        .await;
    assert_error(&missing, 404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// 4. UTC day boundaries.

#[tokio::test]
async fn clicks_either_side_of_midnight_land_in_their_own_days() {
    let srv = analytics_server().await;
    let c = client();
    let (url_id, _) = new_url_on(srv, &c).await;
    import_analytics(vec![
        ClickRow::new(url_id, at("2026-11-30 23:59:59.9"), CHROME_WINDOWS, None),
        ClickRow::new(url_id, at("2026-12-01 00:00:00.0"), FIREFOX_LINUX, None),
    ])
    .await;
    let daily = timeseries(
        srv,
        &c,
        url_id,
        "interval=day&from=2026-11-29&to=2026-12-02",
    )
    .await;
    assert_eq!(
        points(&daily),
        [
            ("2026-11-29T00:00:00".to_string(), 0),
            ("2026-11-30T00:00:00".to_string(), 1),
            ("2026-12-01T00:00:00".to_string(), 1),
            ("2026-12-02T00:00:00".to_string(), 0),
        ]
    );
    let hourly = timeseries(
        srv,
        &c,
        url_id,
        "interval=hour&from=2026-11-30T22:00:00&to=2026-12-01T01:00:00",
    )
    .await;
    assert_eq!(
        points(&hourly),
        [
            ("2026-11-30T22:00:00".to_string(), 0),
            ("2026-11-30T23:00:00".to_string(), 1),
            ("2026-12-01T00:00:00".to_string(), 1),
            ("2026-12-01T01:00:00".to_string(), 0),
        ]
    );
    let day = |d: &str| format!("by=browser&from={d}&to={d}T12:00:00");
    let before = breakdown(srv, &c, url_id, &day("2026-11-30")).await;
    assert_eq!(rows(&before), [("Chrome".to_string(), 1)]);
    assert_eq!(before["to"], "2026-11-30T23:59:59");
    let after = breakdown(srv, &c, url_id, &day("2026-12-01")).await;
    assert_eq!(rows(&after), [("Firefox".to_string(), 1)]);
    assert_eq!(after["from"], "2026-12-01T00:00:00");
    let both = breakdown(
        srv,
        &c,
        url_id,
        "by=browser&from=2026-11-30T23:59:59&to=2026-12-01T00:00:00",
    )
    .await;
    assert_eq!(
        rows(&both),
        [("Chrome".to_string(), 1), ("Firefox".to_string(), 1)]
    );

    let listed = event_list(
        srv,
        &c,
        &format!("/events?url_id={url_id}&event_type=click"),
    )
    .await;
    let times: Vec<&str> = listed
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(times, ["2026-11-30T23:59:59", "2026-12-01T00:00:00"]);
    // Each row is stored in its own day's partition.
    let db = connect(&srv.database_url).await;
    for (event, partition) in listed
        .iter()
        .zip(["click_runs_p20261130", "click_runs_p20261201"])
    {
        let row = db
            .query_one(
                "SELECT tableoid::regclass::text FROM click_runs WHERE $1 = ANY(ids)",
                &[&id_of(event)],
            )
            .await
            .expect("reading a click's partition");
        assert_eq!(row.get::<_, String>(0), partition, "{event}");
    }
    // The export takes `from` and `to` to the second, both included.
    let last_second = export_csv(
        srv,
        &c,
        url_id,
        "from=2026-11-30T23:59:59&to=2026-11-30T23:59:59",
    )
    .await;
    assert_eq!(last_second.lines().count(), 2, "{last_second}");
    assert!(
        last_second.contains(",2026-11-30T23:59:59,"),
        "{last_second}"
    );
    let next_day = export_csv(srv, &c, url_id, "from=2026-12-01").await;
    assert_eq!(next_day.lines().count(), 2, "{next_day}");
    assert!(next_day.contains(",2026-12-01T00:00:00,"), "{next_day}");
}

// ---------------------------------------------------------------------------------------------
// 5. Retention.

#[tokio::test]
async fn retention_drops_old_partitions_and_keeps_the_counters() {
    let db = fresh_database("anaretain").await;
    let code = unique("ret");
    let now = Utc::now().naive_utc();
    let old = now - Span::days(40);
    // Past the 30-day cutoff, in a partition that may outlive it (it ends after the cutoff
    // unless the day is not yet an hour old).
    let edge = now - Span::days(30) - Span::hours(1);
    let recent = now - Span::seconds(30);
    let click = |id: i64, when: NaiveDateTime, agent: Agent| {
        let mut row = ClickRow::new(1, when, agent, None);
        row.id = Some(id);
        row
    };
    let set = SeedSet {
        users: vec![(1, "keeper".into(), format!("{code}@example.com"))],
        urls: vec![(1, Some(1), code.clone(), "https://example.com/kept".into())],
        clicks: vec![
            click(101, old, CHROME_WINDOWS),
            click(102, old + Span::seconds(1), GOOGLEBOT),
            click(103, edge, IPHONE),
            click(104, recent, FIREFOX_LINUX),
        ],
    };
    import_into(&db, &set);
    let admin = connect(&db).await;
    let old_partition = format!("click_runs_p{}", old.format("%Y%m%d"));
    let edge_partition = format!("click_runs_p{}", edge.format("%Y%m%d"));
    let today_partition = format!("click_runs_p{}", recent.format("%Y%m%d"));
    let attached = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                    WHERE i.inhparent = 'click_runs'::regclass AND c.relname = $1),
                            EXISTS (SELECT 1 FROM pg_class WHERE relname = $1)",
                    &[&name],
                )
                .await
                .map(|r| (r.get::<_, bool>(0), r.get::<_, bool>(1)))
                .expect("reading pg_inherits")
        }
    };
    assert_eq!(
        attached(old_partition.clone()).await,
        (true, true),
        "the import made the old day's partition"
    );

    let output = gitrev(&["prune-clicks", "--days", "30"], &db);
    let text = output_text(&output);
    assert!(output.status.success(), "prune-clicks failed:\n{text}");
    let edge_dropped = !attached(edge_partition.clone()).await.1;
    let (partitions, clicks) = if edge_dropped && edge_partition != old_partition {
        (2, 3)
    } else {
        (1, 2)
    };
    assert!(
        text.contains(&format!(
            "dropped {partitions} partition(s), {clicks} click(s), "
        )),
        "prune-clicks reports what it dropped:\n{text}"
    );
    assert!(
        text.contains(&old_partition),
        "prune-clicks names {old_partition}:\n{text}"
    );
    let bytes: i64 = text
        .split(" click(s), ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {text}"));
    assert!(bytes > 0, "dropping a partition frees its bytes: {text}");
    assert_eq!(
        attached(old_partition.clone()).await,
        (false, false),
        "the old partition is gone, not just detached"
    );
    assert_eq!(
        attached(today_partition.clone()).await,
        (true, true),
        "today's partition stays"
    );
    assert!(!text.contains(&today_partition), "{text}");

    let srv = start_server_on(&db, &[("GITREV_CLICK_RETENTION_DAYS", "30")]);
    let c = client();
    assert_eq!(
        stats(&srv, &c, 1).await,
        (4, 1),
        "the counters keep every click, dropped ones included"
    );
    let from = api_time(old - Span::days(1));
    let series = timeseries(&srv, &c, 1, &format!("interval=day&from={from}")).await;
    assert_eq!(points(&series).iter().map(|p| p.1).sum::<i64>(), 4);
    let old_day = api_time(old.date().and_hms_opt(0, 0, 0).expect("midnight"));
    assert!(
        points(&series).contains(&(old_day, 2)),
        "the old day still counts its two clicks: {series}"
    );
    let humans = breakdown(&srv, &c, 1, &format!("by=browser&from={from}&bots=exclude")).await;
    assert_eq!(
        rows(&humans),
        [
            ("Chrome".to_string(), 1),
            ("Firefox".to_string(), 1),
            ("Mobile Safari".to_string(), 1)
        ]
    );

    let listed = event_list(&srv, &c, "/events?url_id=1&event_type=click").await;
    assert_eq!(
        ids(&listed),
        [104],
        "only the click within retention is listed"
    );
    let all = event_list(&srv, &c, "/events?event_type=click").await;
    assert_eq!(ids(&all), [104]);
    for gone in [101, 102, 103] {
        assert_error(
            &srv.get(&c, &format!("/events/{gone}")).await,
            404,
            "not_found",
        );
    }
    get_json(&srv, &c, "/events/104").await;
    let csv = export_csv(&srv, &c, 1, "").await;
    assert_eq!(
        csv,
        format!("{CSV_HEADER}{}", csv_line(104, recent, FIREFOX_LINUX, None)),
        "the export leaves out what retention dropped"
    );
    let csv = export_csv(&srv, &c, 1, &format!("from={from}")).await;
    assert_eq!(csv.lines().count(), 2, "even when asked for: {csv}");
}

// ---------------------------------------------------------------------------------------------
// 6. A url deleted while its click waits in the queue.

#[tokio::test]
async fn a_click_whose_url_was_deleted_while_queued_is_dropped_and_counted() {
    let db = migrated_database("anagone").await;
    let srv = start_server_on(&db, &[("GITREV_STATEMENT_TIMEOUT_MS", "60000")]);
    let c = client();
    let (url_id, code) = new_url_on(&srv, &c).await;
    let (kept_id, kept_code) = new_url_on(&srv, &c).await;
    let gone_before = read_metric(&srv, &c, "gitrev_clicks_url_gone_total").await;
    let lost_before = read_metric(&srv, &c, "gitrev_clicks_lost_total").await;

    // The writer's transaction begins by marking its batch in `click_batches`, before it checks
    // (and locks) the urls of its clicks: holding that table keeps the click waiting before the
    // url is looked at. (Holding `clicks` would not do: the writer would already hold the url's
    // row against deletion, and the DELETE would wait for the click to be written.)
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE click_batches IN SHARE MODE")
        .await
        .expect("locking click_batches");
    read_reply(
        c.get(srv.url(&format!("/{code}")))
            .header("user-agent", ua(CHROME_WINDOWS)),
    )
    .await
    .expect(302, "redirect");
    read_reply(
        c.get(srv.url(&format!("/{kept_code}")))
            .header("user-agent", ua(CHROME_WINDOWS)),
    )
    .await
    .expect(302, "redirect of the url that stays");
    // The writer blocks as soon as it touches `click_batches` (preparing its insert takes the
    // table's lock already), before it looks at any url.
    let waiting = poll(
        Duration::from_secs(30),
        || async {
            holder
                .query_one(
                    "SELECT count(*) FROM pg_locks
                     WHERE database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
                       AND relation = 'click_batches'::regclass AND NOT granted",
                    &[],
                )
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0)
        },
        |n| *n > 0,
    )
    .await;
    if waiting.is_err() {
        let activity: Vec<String> = holder
            .query(
                "SELECT coalesce(state, ''), coalesce(wait_event_type, ''),
                        coalesce(wait_event, ''), left(query, 120)
                 FROM pg_stat_activity WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("reading pg_stat_activity")
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}: {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3)
                )
            })
            .collect();
        panic!("the click writer never waited on click_batches; sessions:\n{activity:#?}");
    }
    let deleted = tokio::time::timeout(
        Duration::from_secs(30),
        srv.delete(&c, &format!("/urls/{url_id}")),
    )
    .await
    .expect("DELETE /urls/{id} does not wait for the click writer");
    assert_eq!(deleted.status, 204, "DELETE: {}", deleted.text);
    holder
        .batch_execute("COMMIT")
        .await
        .expect("releasing click_batches");
    settle_clicks(&srv).await;

    let gone = read_metric(&srv, &c, "gitrev_clicks_url_gone_total").await;
    assert_eq!(
        gone - gone_before,
        1.0,
        "the click of the deleted url is counted"
    );
    let lost = read_metric(&srv, &c, "gitrev_clicks_lost_total").await;
    assert_eq!(lost, lost_before, "nothing was lost");
    let stored = |id: i64| {
        let holder = &holder;
        async move {
            holder
                .query_one(
                    "SELECT COALESCE(sum(cardinality(c.ids)), 0)::bigint
                     FROM click_runs c JOIN click_links l ON l.id = c.link_id
                     WHERE l.url_id = $1",
                    &[&id],
                )
                .await
                .expect("counting stored clicks")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        stored(url_id).await,
        0,
        "the deleted url's click is not stored"
    );
    assert_eq!(
        stored(kept_id).await,
        1,
        "the other url's click, same batch, is"
    );
    assert_eq!(stats(&srv, &c, kept_id).await, (1, 0));
    assert_error(
        &srv.get(&c, &format!("/urls/{url_id}/stats")).await,
        404,
        "not_found",
    );
    let events = event_list(&srv, &c, &format!("/events?url_id={url_id}")).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["created", "deleted"], "no click event: {events:?}");

    let metrics = scrape(&srv, &c).await;
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gitrev_http_requests_total{") && l.contains("status=\"5"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "error log lines: {errors:?}");
}

// ---------------------------------------------------------------------------------------------
// 7. The CSV export.

/// A user agent with a comma and quotes, to be quoted in the export.
const QUOTED: Agent = Agent {
    ua: Some("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0, \"quoted\""),
    ..FIREFOX_LINUX
};

/// The ids of an exported CSV's rows, in order.
fn csv_ids(csv: &str) -> Vec<i64> {
    csv.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .next()
                .unwrap_or_default()
                .parse()
                .expect("an id")
        })
        .collect()
}

/// Runs of one link whose ids interleave (as batches written at once by two replicas leave them),
/// more of them than one step of the export reads: the export, the list and the lookups by id
/// still give every click once, in id order.
#[tokio::test]
async fn interleaved_runs_are_exported_and_listed_in_id_order() {
    let db = migrated_database("anainter").await;
    let srv = start_server_on(&db, &[]);
    let c = client();
    let url = create_url_on(&srv, &c, json!({"original_url": unique_original_url()})).await;
    let url_id = id_of(&url);
    let admin = connect(&db).await;
    let link: i32 = admin
        .query_one(
            "INSERT INTO click_links (digest, url_id, short_code, original_url)
             VALUES ('\\xfeed', $1, 'inter', 'https://example.com/inter') RETURNING id",
            &[&url_id],
        )
        .await
        .expect("a link version")
        .get(0);
    let context: i32 = admin
        .query_one(
            "INSERT INTO click_contexts (digest, bot, browser, os, device, referrer_host)
             VALUES ('\\xfeed', false, 'Other', 'Other', 'other', 'direct') RETURNING id",
            &[],
        )
        .await
        .expect("a context")
        .get(0);
    // 450 ids, dealt over 150 runs so that every run overlaps every other.
    let today = Utc::now().date_naive();
    // Today's partition is made by the server's first maintenance pass, which runs beside the
    // start: wait for it rather than race it.
    let partition = format!("click_runs_p{}", today.format("%Y%m%d"));
    poll(
        Duration::from_secs(30),
        || async {
            admin
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&partition])
                .await
                .expect("looking up the partition")
                .get::<_, bool>(0)
        },
        |made| *made,
    )
    .await
    .unwrap_or_else(|_| panic!("{partition} is made within 30 s of the start"));
    let midnight = today.and_hms_opt(0, 0, 0).expect("midnight");
    let first = 50_000_000i64;
    let mut runs: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for k in 0..450i64 {
        runs.entry(k % 150).or_default().push(first + k);
    }
    for ids in runs.values() {
        let ats: Vec<NaiveDateTime> = ids
            .iter()
            .map(|id| midnight + Span::milliseconds(id - first + 1))
            .collect();
        admin
            .execute(
                "INSERT INTO click_runs (first_id, last_id, at, link_id, ids, ats, contexts)
                 VALUES ($1, $2, $3, $4, $5, $6, array_fill($7::int, ARRAY[cardinality($5::bigint[])]))",
                &[&ids[0], &ids[ids.len() - 1], &ats[0], &link, ids, &ats, &context],
            )
            .await
            .expect("a run");
    }
    let expected: Vec<i64> = (first..first + 450).collect();
    let csv = export_csv(
        &srv,
        &c,
        url_id,
        &format!("from={today}T00:00:00&to={today}T23:59:59"),
    )
    .await;
    let exported = csv_ids(&csv);
    assert_eq!(exported, expected, "every click once, in id order");
    let listed = event_list(
        &srv,
        &c,
        &format!("/events?url_id={url_id}&event_type=click&per_page=1000&page=1"),
    )
    .await;
    assert_eq!(ids(&listed), expected);
    for event in [&listed[0], &listed[200], &listed[449]] {
        let one = get_json(&srv, &c, &format!("/events/{}", id_of(event))).await;
        assert_eq!(&one, event);
        assert_eq!(one["details"]["short_code"], "inter");
    }
}

#[tokio::test]
async fn the_export_is_byte_exact_for_a_small_url() {
    let srv = analytics_server().await;
    let c = client();
    let (url_id, _) = new_url_on(srv, &c).await;
    let sent = [
        (
            at("2026-11-05 09:00:00.25"),
            CHROME_WINDOWS,
            Some("https://example.org/a,b"),
        ),
        (
            at("2026-11-05 09:00:01"),
            QUOTED,
            Some("https://Q.example/\"x\""),
        ),
        (at("2026-11-06 12:00:00"), NO_AGENT, None),
    ];
    import_analytics(
        sent.iter()
            .map(|(when, agent, referrer)| ClickRow::new(url_id, *when, *agent, *referrer))
            .collect(),
    )
    .await;
    let listed = event_list(
        srv,
        &c,
        &format!("/events?url_id={url_id}&event_type=click"),
    )
    .await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let lines: Vec<String> = listed
        .iter()
        .zip(&sent)
        .map(|(event, (when, agent, referrer))| {
            assert_eq!(
                event["timestamp"],
                api_time(*when),
                "listed in import order"
            );
            csv_line(id_of(event), *when, *agent, *referrer)
        })
        .collect();
    let whole = export_csv(srv, &c, url_id, "").await;
    assert_eq!(whole, format!("{CSV_HEADER}{}", lines.concat()));
    assert!(
        whole.contains(",\"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0, \"\"quoted\"\"\","),
        "a user agent with a comma and quotes is quoted, quotes doubled:\n{whole}"
    );
    assert!(
        whole.ends_with(",,,Other,Other,bot,true\n"),
        "no referrer nor user agent: empty fields:\n{whole}"
    );

    for (query, want) in [
        ("from=2026-11-05T09:00:01&to=2026-11-05T09:00:01", vec![1]),
        ("to=2026-11-05T09:00:00", vec![0]),
        ("from=2026-11-05T09:00:00&to=2026-11-06", vec![0, 1]),
        (
            "from=2026-11-05T09:00:01&to=2026-11-06T12:00:00",
            vec![1, 2],
        ),
        ("from=2026-11-06", vec![2]),
        ("from=2026-11-07", vec![]),
    ] {
        let part = export_csv(srv, &c, url_id, query).await;
        let expected: String = want.iter().map(|i: &usize| lines[*i].as_str()).collect();
        assert_eq!(
            part,
            format!("{CSV_HEADER}{expected}"),
            "clicks.csv?{query}"
        );
    }
    let (empty_id, _) = new_url_on(srv, &c).await;
    assert_eq!(export_csv(srv, &c, empty_id, "").await, CSV_HEADER);
    assert_invalid_field(
        &srv.get(
            &c,
            &format!("/urls/{url_id}/clicks.csv?from=2026-11-06&to=2026-11-05"),
        )
        .await,
        "from",
    );
    assert_invalid_field(
        &srv.get(&c, &format!("/urls/{url_id}/clicks.csv?to=never"))
            .await,
        "to",
    );
    assert_error(
        &srv.get(&c, &format!("/urls/{MISSING_ID}/clicks.csv")).await,
        404,
        "not_found",
    );
}

/// Clicks of the large export.
const LARGE: usize = 300_000;

#[tokio::test]
async fn the_export_of_a_large_url_streams_with_flat_memory() {
    let db = fresh_database("anabig").await;
    let code = unique("big");
    let start = at("2026-11-01 00:00:00");
    let agents = [CHROME_WINDOWS, IPHONE, GOOGLEBOT, FIREFOX_LINUX];
    let referrers = [
        Some("https://news.example.com/x"),
        None,
        Some("https://t.co/y"),
    ];
    let set = SeedSet {
        users: vec![(1, "big".into(), format!("{code}@example.com"))],
        urls: vec![(1, Some(1), code, "https://example.com/big".into())],
        clicks: (0..LARGE)
            .map(|i| {
                ClickRow::new(
                    1,
                    start + Span::seconds(i as i64),
                    agents[i % agents.len()],
                    referrers[i % referrers.len()],
                )
            })
            .collect(),
    };
    import_into(&db, &set);
    drop(set);
    let srv = start_server_on(&db, &[]);
    let c = client();
    assert_eq!(stats(&srv, &c, 1).await.0, LARGE as i64);
    // A first export of 20,000 clicks (four chunks), so what any export allocates once (the
    // allocator's arenas, buffers, statements) is there before measuring.
    let warm = export_csv(&srv, &c, 1, "to=2026-11-01T05:33:19").await;
    assert_eq!(warm.lines().count(), 20_001);

    let pid = srv.pid();
    let before = rss_kib(pid);
    let mut response = c
        .get(srv.url("/urls/1/clicks.csv"))
        .send()
        .await
        .expect("GET clicks.csv");
    assert_eq!(response.status().as_u16(), 200);
    let (mut bytes, mut lines, mut peak, mut samples) = (0usize, 0usize, before, 0);
    let mut next_sample = 0usize;
    let mut tail = Vec::new();
    let mut trajectory = Vec::new();
    let mut slowed = false;
    while let Some(chunk) = response.chunk().await.expect("reading the export") {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        if bytes >= next_sample {
            let rss = rss_kib(pid);
            trajectory.push(((bytes / 1024) as u64, rss));
            peak = peak.max(rss);
            samples += 1;
            next_sample = bytes + 512 * 1024;
        }
        tail = chunk.to_vec();
        if !slowed {
            // A slow client at first: a server whose producer ran ahead of what the client
            // takes would fill its memory now.
            slowed = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let after = rss_kib(pid);
    peak = peak.max(after);
    assert_eq!(lines, LARGE + 1, "a header and one line per click");
    assert!(tail.ends_with(b"\n"), "the export ends with a whole line");
    assert!(
        samples > 20,
        "memory was sampled while streaming ({samples})"
    );
    let csv_kib = (bytes / 1024) as u64;
    eprintln!(
        "clicks.csv of {LARGE} clicks: {csv_kib} KiB; server RSS {before} KiB before, \
         {peak} KiB at most, {after} KiB after"
    );
    // Flat: once the first fifth is sent, the rest adds (next to) nothing, where a server that
    // held what it sent would grow by the other four fifths. (The first chunks may move the
    // allocator's high-water mark once, by a fixed amount whatever the size: measured 1–40 MiB.)
    let fifth = csv_kib / 5;
    let early = trajectory
        .iter()
        .filter(|(sent, _)| *sent <= fifth)
        .map(|s| s.1)
        .max()
        .unwrap_or(before);
    let late = trajectory
        .iter()
        .filter(|(sent, _)| *sent > fifth)
        .map(|s| s.1)
        .max()
        .unwrap_or(after)
        .max(after);
    assert!(
        peak.saturating_sub(before) < csv_kib,
        "the server's memory grew by {} KiB while streaming {csv_kib} KiB of CSV: it held the \
         file; (KiB sent, RSS KiB): {trajectory:?}",
        peak.saturating_sub(before)
    );
    assert!(
        // A quarter: a server holding what it sent grows by four fifths; mimalloc without THP
        // (Cargo.toml) returns and refaults pages, so a streaming server's RSS wanders by a few MiB.
        late.saturating_sub(early) < csv_kib / 4,
        "the server's memory grew by {} KiB over the last {} KiB of the export: it is not \
         streaming; (KiB sent, RSS KiB): {trajectory:?}",
        late.saturating_sub(early),
        csv_kib - fifth
    );
}

// ---------------------------------------------------------------------------------------------
// 8. The migration of an old database's clicks.

/// An `events` row of a database at migration 1: id, url_id, user_id, type, timestamp, details,
/// and (for a click) its `bot` once moved.
type OldEvent = (
    i64,
    i64,
    Option<i64>,
    &'static str,
    &'static str,
    Value,
    Option<bool>,
);

/// The migrations' ledger as `crates/store/src/migrate.rs` keeps it.
async fn create_ledger(db: &tokio_postgres::Client) {
    db.batch_execute(
        "CREATE TABLE schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            checksum   TEXT NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))",
    )
    .await
    .expect("creating the ledger");
}

#[tokio::test]
async fn the_migration_moves_an_old_databases_clicks_and_loses_nothing() {
    let db = fresh_database("anamigr").await;
    let old = connect(&db).await;
    old.batch_execute(include_str!("../../sql/0001_init.sql"))
        .await
        .expect("applying 0001_init.sql");
    create_ledger(&old).await;
    old.execute(
        "INSERT INTO schema_migrations (version, name, checksum)
         VALUES (1, '0001_init.sql', encode(sha256(convert_to($1, 'UTF8')), 'hex'))",
        &[&include_str!("../../sql/0001_init.sql")],
    )
    .await
    .expect("recording migration 1");
    let code = unique("old");
    let target = "https://example.com/old-target";
    old.execute(
        "INSERT INTO users (id, username, email) VALUES (1, 'old', $1)",
        &[&format!("{code}@example.com")],
    )
    .await
    .expect("a user");
    old.execute(
        "INSERT INTO urls (id, user_id, short_code, original_url)
         VALUES (1, 1, $1, $2), (2, 1, $3, 'https://example.com/two')",
        &[&code, &target, &format!("{code}2")],
    )
    .await
    .expect("urls");
    let link = json!({"short_code": code, "original_url": target});
    let with = |extra: Value| {
        let mut details = link.clone();
        for (k, v) in extra.as_object().expect("an object") {
            details[k] = v.clone();
        }
        details
    };
    let events: Vec<OldEvent> = vec![
        (
            1,
            1,
            Some(1),
            "created",
            "2026-10-01 09:00:00",
            link.clone(),
            None,
        ),
        (
            2,
            1,
            Some(1),
            "click",
            "2026-10-02 10:15:00.123456",
            with(
                json!({"user_agent": ua(CHROME_WINDOWS), "referrer": "https://news.example.com/x"}),
            ),
            Some(false),
        ),
        (
            3,
            1,
            Some(1),
            "click",
            "2026-10-02 11:00:00",
            with(json!({"user_agent": ua(GOOGLEBOT)})),
            Some(true),
        ),
        (
            4,
            1,
            Some(1),
            "click",
            "2026-10-03 00:00:00",
            link.clone(),
            Some(true),
        ),
        (
            5,
            1,
            Some(1),
            "updated",
            "2026-10-03 01:00:00",
            json!({"field": "title", "new_value": "Old"}),
            None,
        ),
        (
            6,
            2,
            None,
            "click",
            "2026-10-04 12:00:00",
            json!({"campaign": "fall", "n": 3, "user_agent": ua(IPHONE), "bot": true}),
            Some(false),
        ),
        (
            7,
            99,
            None,
            "click",
            "2026-10-05 08:00:00",
            json!({"short_code": "goneAA", "original_url": "https://gone.example/"}),
            Some(true),
        ),
    ];
    for (id, url_id, user_id, kind, when, details, _) in &events {
        old.execute(
            "INSERT INTO events (id, url_id, user_id, event_type, timestamp, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[id, url_id, user_id, kind, &at(when), details],
        )
        .await
        .expect("an old event");
    }
    old.batch_execute(
        "INSERT INTO url_stats (url_id, clicks, last_click_at)
         VALUES (1, 3, '2026-10-03 00:00:00'), (2, 1, '2026-10-04 12:00:00');
         SELECT setval(pg_get_serial_sequence('events', 'id'), 7);
         SELECT setval(pg_get_serial_sequence('urls', 'id'), 2);
         SELECT setval(pg_get_serial_sequence('users', 'id'), 1);",
    )
    .await
    .expect("counters and sequences");

    let srv = start_server_on(&db, &[]);
    let left = poll(
        Duration::from_secs(60),
        || async {
            old.query_one(
                "SELECT count(*) FROM events WHERE event_type = 'click'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(-1)
        },
        |n| *n == 0,
    )
    .await;
    assert_eq!(left, Ok(0), "the old click rows leave `events`");
    let moved: i64 = old
        .query_one("SELECT count(*) FROM click_log", &[])
        .await
        .expect("counting clicks")
        .get(0);
    assert_eq!(moved, 5, "every old click is in the click log");

    let c = client();
    let expected = |url_id: i64| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.1 == url_id)
            .map(|(id, url_id, user_id, kind, when, details, bot)| {
                let mut details = details.clone();
                if let Some(bot) = bot {
                    details["bot"] = json!(bot);
                }
                json!({"id": id, "url_id": url_id, "user_id": user_id, "event_type": kind,
                       "timestamp": api_time(at(when)), "details": details})
            })
            .collect()
    };
    for url_id in [1, 2, 99] {
        let listed = event_list(&srv, &c, &format!("/events?url_id={url_id}")).await;
        assert_eq!(listed, expected(url_id), "the events of url {url_id}");
        for event in &listed {
            let one = get_json(&srv, &c, &format!("/events/{}", id_of(event))).await;
            assert_eq!(&one, event);
        }
    }
    let all = event_list(&srv, &c, "/events").await;
    assert_eq!(
        ids(&all),
        (1..=7).collect::<Vec<i64>>(),
        "nothing lost, nothing added"
    );

    let one = get_json(&srv, &c, "/urls/1/stats").await;
    assert_eq!(
        one,
        json!({"url_id": 1, "clicks": 3, "bot_clicks": 2, "last_click_at": "2026-10-03T00:00:00"})
    );
    assert_eq!(stats(&srv, &c, 2).await, (1, 0));
    let daily = timeseries(&srv, &c, 1, "interval=day&from=2026-10-01&to=2026-10-04").await;
    assert_eq!(
        points(&daily).iter().map(|p| p.1).collect::<Vec<_>>(),
        [0, 2, 1, 0]
    );
    let hourly = timeseries(
        &srv,
        &c,
        1,
        "from=2026-10-02T10:00:00&to=2026-10-02T11:59:59&bots=exclude",
    )
    .await;
    assert_eq!(
        points(&hourly).iter().map(|p| p.1).collect::<Vec<_>>(),
        [1, 0]
    );
    let referrers = breakdown(&srv, &c, 1, "by=referrer&from=2026-10-01&to=2026-10-05").await;
    assert_eq!(
        rows(&referrers),
        [
            ("direct".to_string(), 2),
            ("news.example.com".to_string(), 1)
        ]
    );
    let ledger: i64 = old
        .query_one("SELECT max(version)::bigint FROM schema_migrations", &[])
        .await
        .expect("reading the ledger")
        .get(0);
    assert!(ledger >= 2, "the server migrated the old database");
    // New clicks come after the moved ones.
    let code_path = code_path(&json!({"short_code": code}));
    srv.get(&c, &code_path).await.expect(302, "redirect");
    settle_clicks(&srv).await;
    let after = event_list(&srv, &c, "/events?url_id=1&event_type=click").await;
    assert_eq!(after.len(), 4);
    assert!(
        id_of(&after[3]) > 7,
        "a new click takes a new id: {}",
        after[3]
    );
    assert_eq!(stats(&srv, &c, 1).await, (4, 3));
}

/// Lists url 1's events, reads four of them by id and exports its clicks, checking each against
/// the old rows `(id, at, link, context)`; answers the list.
async fn read_every_way(
    srv: &TestServer,
    c: &reqwest::Client,
    before: &[(i64, NaiveDateTime, i32, i32)],
) -> Vec<Value> {
    let listed = event_list(srv, c, "/events?url_id=1&per_page=1000&page=1").await;
    assert_eq!(listed.len(), before.len());
    for (event, (id, at, link, context)) in listed.iter().zip(before) {
        assert_eq!(id_of(event), *id);
        assert_eq!(event["timestamp"], json!(api_time(*at)), "{event}");
        assert_eq!(event["event_type"], "click");
        let target = if *link == 1 {
            "https://example.com/old"
        } else {
            "https://example.com/new"
        };
        assert_eq!(event["details"]["original_url"], target, "{event}");
        assert_eq!(event["details"]["bot"], json!(*context == 2), "{event}");
        if *context == 2 {
            assert_eq!(event["details"]["campaign"], "fall", "{event}");
        }
    }
    for event in [&listed[0], &listed[149], &listed[150], &listed[299]] {
        let one = get_json(srv, c, &format!("/events/{}", id_of(event))).await;
        assert_eq!(&one, event);
    }
    srv.get(c, "/events/9")
        .await
        .expect(404, "an id no click has");
    let csv = export_csv(srv, c, 1, "from=2026-10-01&to=2026-10-05").await;
    let exported = csv_ids(&csv);
    assert_eq!(
        exported,
        before.iter().map(|b| b.0).collect::<Vec<i64>>(),
        "the export, in id order"
    );
    listed
}

/// A database at migration 4 whose clicks are one row each (`sql/0002_clicks.sql`): after
/// migration 5 they read as before (by list, by id, by export) while they wait in `clicks` and once
/// the maintenance pass has moved them into runs.
#[tokio::test]
async fn migration_5_regroups_stored_clicks_into_runs_and_loses_nothing() {
    let db = fresh_database("anaruns").await;
    let old = connect(&db).await;
    create_ledger(&old).await;
    let files = [
        ("0001_init.sql", include_str!("../../sql/0001_init.sql")),
        ("0002_clicks.sql", include_str!("../../sql/0002_clicks.sql")),
        ("0003_keys.sql", include_str!("../../sql/0003_keys.sql")),
        ("0004_links.sql", include_str!("../../sql/0004_links.sql")),
    ];
    for (version, (name, sql)) in (1..).zip(files) {
        old.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("applying {name}: {e}"));
        old.execute(
            "INSERT INTO schema_migrations (version, name, checksum)
             VALUES ($1, $2, encode(sha256(convert_to($3, 'UTF8')), 'hex'))",
            &[&version, &name, &sql],
        )
        .await
        .expect("recording a migration");
    }
    let code = unique("runs");
    old.batch_execute(&format!(
        "INSERT INTO users (id, username, email) VALUES (1, 'old', '{code}@example.com');
         INSERT INTO urls (id, user_id, short_code, original_url)
             VALUES (1, 1, '{code}', 'https://example.com/new');
         INSERT INTO click_links (id, digest, url_id, user_id, short_code, original_url) VALUES
             (1, '\\x01', 1, 1, '{code}', 'https://example.com/old'),
             (2, '\\x02', 1, 1, '{code}', 'https://example.com/new');
         INSERT INTO click_contexts (id, digest, user_agent, referrer, extra, bot, browser, os,
                                     device, referrer_host) VALUES
             (1, '\\x01', 'Mozilla/5.0 Chrome', 'https://news.example.com/a', NULL, false,
              'Chrome', 'Windows', 'desktop', 'news.example.com'),
             (2, '\\x02', 'Googlebot/2.1', NULL, '{{\"campaign\": \"fall\"}}', true,
              'Googlebot', 'Other', 'bot', 'direct');
         CREATE TABLE clicks_p20261002 PARTITION OF clicks
             FOR VALUES FROM ('2026-10-02') TO ('2026-10-03');
         CREATE TABLE clicks_p20261003 PARTITION OF clicks
             FOR VALUES FROM ('2026-10-03') TO ('2026-10-04');
         -- 300 clicks, ids 10..309: the two link versions and contexts alternate, the first
         -- 150 on one day, the rest on the next.
         INSERT INTO clicks (id, at, link_id, context_id)
             SELECT i, timestamp '2026-10-02 12:00:00' + (i - 10) * interval '4 minutes 47 seconds',
                    1 + i % 2, 1 + (i / 3) % 2
             FROM generate_series(10, 309) i;
         INSERT INTO url_stats (url_id, clicks, bot_clicks) VALUES (1, 300, 150);
         SELECT setval(pg_get_serial_sequence('events', 'id'), 309);
         SELECT setval(pg_get_serial_sequence('click_links', 'id'), 2);
         SELECT setval(pg_get_serial_sequence('click_contexts', 'id'), 2);
         SELECT setval(pg_get_serial_sequence('urls', 'id'), 1);
         SELECT setval(pg_get_serial_sequence('users', 'id'), 1);"
    ))
    .await
    .expect("an old click log");
    let before: Vec<(i64, NaiveDateTime, i32, i32)> = old
        .query(
            "SELECT id, at, link_id, context_id FROM clicks ORDER BY id",
            &[],
        )
        .await
        .expect("reading the old rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(before.len(), 300);

    let srv = start_server_on(&db, &[]);
    let c = client();
    // Read at once (the clicks may not have moved yet), then again once they are runs.
    let first = read_every_way(&srv, &c, &before).await;
    let left = poll(
        Duration::from_secs(60),
        || async {
            old.query_one("SELECT count(*) FROM clicks", &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        },
        |n| *n == 0,
    )
    .await;
    assert_eq!(
        left,
        Ok(0),
        "the maintenance pass moves every click into runs"
    );
    let runs = old
        .query_one(
            "SELECT count(*), max(cardinality(ids))::bigint, sum(cardinality(ids))::bigint,
                    bool_and(ids[1] = first_id AND ids[cardinality(ids)] = last_id)
             FROM click_runs",
            &[],
        )
        .await
        .expect("reading the runs");
    assert_eq!(runs.get::<_, i64>(2), 300, "every click is in a run");
    assert!(runs.get::<_, i64>(0) < 300, "clicks share runs");
    assert!(runs.get::<_, i64>(1) <= 64, "a run holds at most 64 clicks");
    assert!(
        runs.get::<_, bool>(3),
        "a run's first and last ids bound it"
    );
    let second = read_every_way(&srv, &c, &before).await;
    assert_eq!(first, second, "moving changes nothing that shows");

    // New clicks take ids after the regrouped ones.
    srv.get(&c, &format!("/{code}"))
        .await
        .expect(302, "redirect");
    settle_clicks(&srv).await;
    let all = event_list(&srv, &c, "/events?url_id=1").await;
    assert_eq!(all.len(), 301, "{:?}", &all[all.len().saturating_sub(2)..]);
    assert!(id_of(&all[300]) > 309, "{}", all[300]);
}

// ---------------------------------------------------------------------------------------------
// 9. Any sequence of clicks: the rollups equal counts of the raw clicks.

const REFERRERS: [(Option<&str>, &str); 4] = [
    (None, "direct"),
    (Some("https://Search.Example/q?x=1"), "search.example"),
    (Some("https://t.co/abc"), "t.co"),
    (Some("not a url"), "other"),
];
/// Urls per case, and the span of days the clicks fall in.
const URLS: usize = 3;
const DAYS: i64 = 3;

#[derive(Clone, Debug)]
struct Drawn {
    url: usize,
    second: i64,
    agent: usize,
    referrer: usize,
}

fn drawn() -> impl Strategy<Value = Vec<Drawn>> {
    prop::collection::vec(
        (
            0..URLS,
            0..DAYS * 86_400,
            0..AGENTS.len(),
            0..REFERRERS.len(),
        )
            .prop_map(|(url, second, agent, referrer)| Drawn {
                url,
                second,
                agent,
                referrer,
            }),
        0..40,
    )
}

/// What each url's rollups must say, counted from the drawn clicks.
#[derive(Default, Debug)]
struct Counted {
    clicks: i64,
    bots: i64,
    /// By hour index (0..DAYS*24): (all, humans).
    hours: BTreeMap<i64, (i64, i64)>,
    /// By dimension, then value: (all, humans).
    values: BTreeMap<&'static str, BTreeMap<String, (i64, i64)>>,
}

fn count(clicks: &[Drawn], url: usize) -> Counted {
    let mut counted = Counted::default();
    for click in clicks.iter().filter(|c| c.url == url) {
        let agent = AGENTS[click.agent];
        let human = i64::from(!agent.bot);
        counted.clicks += 1;
        counted.bots += i64::from(agent.bot);
        let hour = counted.hours.entry(click.second / 3600).or_default();
        hour.0 += 1;
        hour.1 += human;
        for (by, value) in [
            ("referrer", REFERRERS[click.referrer].1),
            ("browser", agent.browser),
            ("os", agent.os),
            ("device", agent.device),
        ] {
            let n = counted
                .values
                .entry(by)
                .or_default()
                .entry(value.to_string())
                .or_default();
            n.0 += 1;
            n.1 += human;
        }
    }
    counted
}

async fn check_case(clicks: &[Drawn]) -> Result<(), TestCaseError> {
    let srv = analytics_server().await;
    let c = client();
    let mut url_ids = Vec::new();
    for _ in 0..URLS {
        url_ids.push(new_url_on(srv, &c).await.0);
    }
    let start = at("2026-10-20 00:00:00");
    if !clicks.is_empty() {
        import_analytics(
            clicks
                .iter()
                .map(|d| {
                    ClickRow::new(
                        url_ids[d.url],
                        start + Span::seconds(d.second) + Span::milliseconds(d.second % 1000),
                        AGENTS[d.agent],
                        REFERRERS[d.referrer].0,
                    )
                })
                .collect(),
        )
        .await;
    }
    let range = format!(
        "from={}&to={}",
        api_time(start),
        api_time(start + Span::days(DAYS) - Span::seconds(1))
    );
    for (url, url_id) in url_ids.iter().enumerate() {
        let want = count(clicks, url);
        let url_id = *url_id;
        prop_assert_eq!(
            stats(srv, &c, url_id).await,
            (want.clicks, want.bots),
            "stats of url {}",
            url
        );
        let listed = event_list(
            srv,
            &c,
            &format!("/events?url_id={url_id}&event_type=click"),
        )
        .await;
        prop_assert_eq!(
            listed.len() as i64,
            want.clicks,
            "click events of url {}",
            url
        );
        for (bots, human) in [("include", false), ("exclude", true)] {
            let pick = |n: &(i64, i64)| if human { n.1 } else { n.0 };
            let hourly = timeseries(srv, &c, url_id, &format!("{range}&bots={bots}")).await;
            let want_hours: Vec<i64> = (0..DAYS * 24)
                .map(|h| want.hours.get(&h).map_or(0, pick))
                .collect();
            let got: Vec<i64> = points(&hourly).iter().map(|p| p.1).collect();
            prop_assert_eq!(&got, &want_hours, "hours of url {}, bots={}", url, bots);
            let daily = timeseries(
                srv,
                &c,
                url_id,
                &format!("{range}&bots={bots}&interval=day"),
            )
            .await;
            let want_days: Vec<i64> = want_hours.chunks(24).map(|d| d.iter().sum()).collect();
            let got: Vec<i64> = points(&daily).iter().map(|p| p.1).collect();
            prop_assert_eq!(&got, &want_days, "days of url {}, bots={}", url, bots);
            for by in ["referrer", "browser", "os", "device"] {
                let body = breakdown(
                    srv,
                    &c,
                    url_id,
                    &format!("by={by}&{range}&bots={bots}&limit=1000"),
                )
                .await;
                let mut want_rows: Vec<(String, i64)> = want
                    .values
                    .get(by)
                    .map(|values| {
                        values
                            .iter()
                            .map(|(v, n)| (v.clone(), pick(n)))
                            .filter(|(_, n)| *n > 0)
                            .collect()
                    })
                    .unwrap_or_default();
                want_rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                prop_assert_eq!(
                    rows(&body),
                    want_rows,
                    "by={} of url {}, bots={}",
                    by,
                    url,
                    bots
                );
            }
        }
    }
    Ok(())
}

/// Replay a failure with `PROPTEST_RNG_SEED=<seed>` (and `PROPTEST_CASES`); the minimal failing
/// sequence is printed.
#[test]
fn rollups_equal_the_raw_counts_for_any_sequence_of_clicks() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let result = runner.run(&drawn(), |clicks| runtime.block_on(check_case(&clicks)));
    if let Err(err) = result {
        panic!("{err}");
    }
}
