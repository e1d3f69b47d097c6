//! Pagination of the lists: `?page&per_page`, the defaults when one is missing, `x-total-count`, the
//! `link: <…>; rel="next"` header, and 422 for bad values. Exact totals come from data each test owns
//! (filtered by its own user or url), or from a seeded database of its own.

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{
    assert_error, client, create_url, create_url_with, create_user, id_of, seeded_database, server,
    start_server_on, unique_original_url, Reply, TestServer,
};

/// The target of a `rel="next"` link header, or `None` when there is none.
fn next_link(reply: &Reply) -> Option<String> {
    let header = reply.header("link")?;
    let (target, params) = header
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .unwrap_or_else(|| panic!("link header is <target>; rel=\"next\", got {header:?}"));
    assert!(
        params.contains("rel=\"next\""),
        "link header names rel=\"next\": {header:?}"
    );
    Some(target.to_string())
}

/// Path and the set of query pairs of a link target such as `/urls?user_id=5&page=2&per_page=10`.
fn split_target(target: &str) -> (String, BTreeSet<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    (path.to_string(), pairs)
}

fn pairs(list: &[(&str, String)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn ids(reply: &Reply) -> Vec<i64> {
    reply.array().iter().map(id_of).collect()
}

async fn get_list(srv: &TestServer, path: &str) -> Reply {
    srv.get(&client(), path).await.expect(200, path)
}

#[tokio::test]
async fn pages_walk_a_filtered_list_through_link_headers() {
    let c = client();
    let user = create_user(&c).await;
    let uid = id_of(&user);
    let mut all = BTreeSet::new();
    for _ in 0..25 {
        all.insert(id_of(&create_url(&c, uid).await));
    }

    let first = get_list(server(), &format!("/urls?user_id={uid}&page=1&per_page=10")).await;
    assert_eq!(first.array().len(), 10);
    assert_eq!(first.total_count(), 25);
    let link = next_link(&first).expect("a next link after page 1 of 3");
    let (path, query) = split_target(&link);
    assert_eq!(path, "/urls");
    assert_eq!(
        query,
        pairs(&[
            ("user_id", uid.to_string()),
            ("page", "2".into()),
            ("per_page", "10".into())
        ]),
        "the next link keeps the filter: {link}"
    );

    let second = get_list(server(), &link).await;
    assert_eq!(second.array().len(), 10);
    assert_eq!(second.total_count(), 25);
    let link = next_link(&second).expect("a next link after page 2 of 3");
    assert_eq!(
        split_target(&link).1,
        pairs(&[
            ("user_id", uid.to_string()),
            ("page", "3".into()),
            ("per_page", "10".into())
        ])
    );

    let third = get_list(server(), &link).await;
    assert_eq!(third.array().len(), 5);
    assert_eq!(third.total_count(), 25);
    assert_eq!(next_link(&third), None, "no next link on the last page");

    let mut seen = BTreeSet::new();
    for id in ids(&first)
        .into_iter()
        .chain(ids(&second))
        .chain(ids(&third))
    {
        assert!(seen.insert(id), "url {id} appears on two pages");
    }
    assert_eq!(seen, all, "the pages together are the whole list");

    let past = get_list(server(), &format!("/urls?user_id={uid}&page=4&per_page=10")).await;
    assert!(past.array().is_empty(), "a page past the end is empty");
    assert_eq!(past.total_count(), 25);
    assert_eq!(next_link(&past), None);
}

#[tokio::test]
async fn only_per_page_means_page_one() {
    let c = client();
    let user = create_user(&c).await;
    let uid = id_of(&user);
    for _ in 0..7 {
        create_url(&c, uid).await;
    }
    let implicit = get_list(server(), &format!("/urls?user_id={uid}&per_page=5")).await;
    let explicit = get_list(server(), &format!("/urls?user_id={uid}&page=1&per_page=5")).await;
    assert_eq!(implicit.array().len(), 5);
    assert_eq!(implicit.json, explicit.json);
    assert_eq!(implicit.total_count(), 7);
    let link = next_link(&implicit).expect("more rows exist past page 1");
    assert_eq!(
        split_target(&link).1,
        pairs(&[
            ("user_id", uid.to_string()),
            ("page", "2".into()),
            ("per_page", "5".into())
        ])
    );
}

#[tokio::test]
async fn only_page_means_100_per_page_and_neither_means_everything() {
    let c = client();
    let url = create_url_with(&c, json!({"original_url": unique_original_url()})).await;
    let url_id = id_of(&url);
    // With its created event, the url has 105 events.
    for n in 0..104 {
        server()
            .post(
                &c,
                "/events",
                &json!({"event_type": "view", "url_id": url_id, "details": {"n": n}}),
            )
            .await
            .expect(201, "POST /events");
    }

    let page1 = get_list(server(), &format!("/events?url_id={url_id}&page=1")).await;
    assert_eq!(page1.array().len(), 100, "the default page size is 100");
    assert_eq!(page1.total_count(), 105);
    let link = next_link(&page1).expect("5 more rows");
    assert_eq!(
        split_target(&link).1,
        pairs(&[
            ("url_id", url_id.to_string()),
            ("page", "2".into()),
            ("per_page", "100".into())
        ])
    );
    let page2 = get_list(server(), &format!("/events?page=2&url_id={url_id}")).await;
    assert_eq!(page2.array().len(), 5);
    assert_eq!(next_link(&page2), None);

    let whole = get_list(server(), &format!("/events?url_id={url_id}")).await;
    assert_eq!(
        whole.array().len(),
        105,
        "no paging parameters: the whole list"
    );
    assert_eq!(whole.total_count(), 105);
    assert_eq!(next_link(&whole), None);
    let mut paged: Vec<i64> = ids(&page1).into_iter().chain(ids(&page2)).collect();
    let mut listed = ids(&whole);
    paged.sort_unstable();
    listed.sort_unstable();
    assert_eq!(paged, listed);
}

#[tokio::test]
async fn users_link_header_has_the_documented_form() {
    let c = client();
    create_user(&c).await;
    create_user(&c).await;
    let reply = get_list(server(), "/users?page=1&per_page=1").await;
    assert_eq!(reply.array().len(), 1);
    assert!(reply.total_count() >= 2);
    assert_eq!(
        reply.header("link"),
        Some("</users?page=2&per_page=1>; rel=\"next\"")
    );
}

#[tokio::test]
async fn unknown_parameters_are_ignored() {
    let c = client();
    let user = create_user(&c).await;
    let uid = id_of(&user);
    create_url(&c, uid).await;
    create_url(&c, uid).await;
    let plain = get_list(server(), &format!("/urls?user_id={uid}")).await;
    let extra = get_list(server(), &format!("/urls?user_id={uid}&sort=desc&foo=bar")).await;
    assert_eq!(plain.array().len(), 2);
    assert_eq!(plain.json, extra.json);
}

#[tokio::test]
async fn bad_page_parameters_are_422() {
    let c = client();
    let bad = [
        "page=0",
        "per_page=0",
        "per_page=1001",
        "page=abc",
        "per_page=abc",
        "page=-1",
        "page=1.5",
        "page=1&per_page=-5",
    ];
    for list in ["/users", "/urls", "/events"] {
        for query in bad {
            let reply = server().get(&c, &format!("{list}?{query}")).await;
            assert_error(&reply, 422, "validation_failed");
        }
        let reply = server()
            .get(&c, &format!("{list}?page=1&per_page=1000"))
            .await;
        assert_eq!(
            reply.status, 200,
            "{list}?per_page=1000 is allowed: {}",
            reply.text
        );
    }
}

#[tokio::test]
async fn seeded_data_pages_exactly() {
    let url = seeded_database("gitrev").await;
    let srv = start_server_on(&url, &[]);

    let first = get_list(&srv, "/users?page=1&per_page=10").await;
    assert_eq!(
        first.array().len(),
        10,
        "?page=1&per_page=10 returns exactly 10 rows"
    );
    assert_eq!(first.total_count(), 400);
    assert_eq!(
        first.header("link"),
        Some("</users?page=2&per_page=10>; rel=\"next\"")
    );

    let last = get_list(&srv, "/users?page=40&per_page=10").await;
    assert_eq!(last.array().len(), 10);
    assert_eq!(next_link(&last), None);
    let past = get_list(&srv, "/users?page=41&per_page=10").await;
    assert!(past.array().is_empty());

    let all = get_list(&srv, "/users").await;
    assert_eq!(all.array().len(), 400);
    assert_eq!(all.total_count(), 400);
    let distinct: BTreeSet<i64> = ids(&all).into_iter().collect();
    assert_eq!(distinct, (1..=400).collect::<BTreeSet<i64>>());

    let urls = get_list(&srv, "/urls?page=1&per_page=10").await;
    assert_eq!(urls.array().len(), 10);
    assert_eq!(urls.total_count(), 2000);
    let events = get_list(&srv, "/events?page=1&per_page=10").await;
    assert_eq!(events.array().len(), 10);
    assert_eq!(events.total_count(), 3422);
    let whole = get_list(&srv, "/events").await;
    assert_eq!(whole.array().len(), 3422, "the whole list is under the cap");
}

#[tokio::test]
async fn the_unpaged_list_is_capped_by_configuration() {
    let url = seeded_database("gitrev").await;
    let srv = start_server_on(&url, &[("GITREV_LIST_CAP", "1000")]);
    let capped = get_list(&srv, "/urls").await;
    assert_eq!(
        capped.array().len(),
        1000,
        "no paging parameters: up to the cap"
    );
    assert_eq!(
        capped.total_count(),
        2000,
        "x-total-count counts every matching row"
    );
    let filtered = get_list(&srv, "/events?event_type=created").await;
    assert_eq!(filtered.array().len(), 1000);
    assert_eq!(filtered.total_count(), 2000);
    let small = get_list(&srv, "/events?event_type=deleted").await;
    assert_eq!(
        small.array().len(),
        216,
        "under the cap: the whole filtered list"
    );
    assert_eq!(small.total_count(), 216);
}
