use std::time::{Duration, Instant};

use super::*;

fn agent(ua: &str) -> Agent {
    classifier().agent(Some(ua))
}

/// Asserts the whole classification of a user agent.
#[track_caller]
fn check(ua: &str, bot: bool, browser: &str, os: &str, device: Device) {
    let got = agent(ua);
    let want = Agent {
        bot,
        browser: browser.to_owned(),
        os: os.to_owned(),
        device,
    };
    assert_eq!(got, want, "user agent {ua:?}");
}

/// [`check`] for each (user agent, bot, browser, os, device) row.
#[track_caller]
fn check_all(cases: &[(&str, bool, &str, &str, Device)]) {
    for (ua, bot, browser, os, device) in cases {
        check(ua, *bot, browser, os, *device);
    }
}

#[test]
fn the_classifier_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Classifier>();
    // And the shared one answers from other threads as on this one.
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let here = agent(ua);
    let there = std::thread::spawn(move || classifier().agent(Some(ua)))
        .join()
        .unwrap();
    assert_eq!(here, there);
}

#[test]
fn a_new_classifier_answers_like_the_shared_one() {
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    assert_eq!(Classifier::default().agent(Some(ua)), agent(ua));
}

#[test]
fn desktop_browsers() {
    check_all(&[
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false, "Chrome", "Windows", Device::Desktop),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", false, "Firefox", "Linux", Device::Desktop),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", false, "Firefox", "Ubuntu", Device::Desktop),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", false, "Safari", "Mac OS X", Device::Desktop),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70", false, "Edge", "Windows", Device::Desktop),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false, "Chrome", "Chrome OS", Device::Desktop),
    ]);
}

#[test]
fn phones() {
    check_all(&[
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", false, "Mobile Safari", "iOS", Device::Mobile),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36", false, "Chrome Mobile", "Android", Device::Mobile),
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", false, "Chrome Mobile", "Android", Device::Mobile),
        ("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", false, "Firefox Mobile", "Android", Device::Mobile),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", false, "Chrome Mobile iOS", "iOS", Device::Mobile),
    ]);
}

#[test]
fn tablets() {
    check_all(&[
        ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", false, "Mobile Safari", "iOS", Device::Tablet),
        // An Android tablet's browser leaves out `Mobile`.
        ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", false, "Chrome", "Android", Device::Tablet),
        // Amazon's Silk on a Fire tablet.
        ("Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.2.1 like Chrome/131.0.6778.85 Safari/537.36", false, "Amazon Silk", "Android", Device::Tablet),
    ]);
}

#[test]
fn crawlers_and_link_previews_are_bots() {
    for (ua, browser) in [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
        ),
        // Googlebot's smartphone crawler looks like Chrome on Android, until its last words.
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "bingbot",
        ),
        (
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Slackbot-LinkExpanding",
        ),
        ("Twitterbot/1.0", "Twitterbot"),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "FacebookBot",
        ),
        (
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "Discordbot",
        ),
        (
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "LinkedInBot",
        ),
        (
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "UptimeRobot",
        ),
        ("WhatsApp/2.23.20.0", "WhatsApp"),
        ("TelegramBot (like TwitterBot)", "TelegramBot"),
    ] {
        let got = agent(ua);
        assert!(got.bot, "{ua:?} is a bot: {got:?}");
        assert_eq!(got.device, Device::Bot, "{ua:?}");
        assert_eq!(got.browser, browser, "{ua:?}");
    }
}

#[test]
fn http_libraries_and_load_tools_are_bots() {
    for ua in [
        "curl/8.5.0",
        "python-requests/2.32.3",
        "Go-http-client/1.1",
        "Go-http-client/2.0",
        "wrk",
        "wrk/4.2.0",
        "okhttp/4.12.0",
        "axios/1.7.7",
        "Wget/1.21.4",
        "Python-urllib/3.11",
        "Java/17.0.2",
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    ] {
        let got = agent(ua);
        assert!(got.bot, "{ua:?} is a bot: {got:?}");
        assert_eq!(got.device, Device::Bot, "{ua:?}");
    }
    // The families uap-core knows for some of them.
    assert_eq!(agent("curl/8.5.0").browser, "curl");
    assert_eq!(agent("python-requests/2.32.3").browser, "Python Requests");
}

#[test]
fn no_user_agent_is_a_bot() {
    let none = Agent {
        bot: true,
        browser: "Other".into(),
        os: "Other".into(),
        device: Device::Bot,
    };
    assert_eq!(classifier().agent(None), none);
    assert_eq!(classifier().agent(Some("")), none);
}

#[test]
fn garbage_is_whatever_the_bot_list_says_and_otherwise_unknown() {
    // isbot's list takes a bare product token ("x", "x/1.0") for a client library: a bot.
    check("x", true, "Other", "Other", Device::Bot);
    check("   ", true, "Other", "Other", Device::Bot);
    // Not on the list, and nothing uap-core knows: a person with an unknown browser.
    check(
        "Mozilla/5.0 (Nonesuch; Zz 1) Gecko Qq/9",
        false,
        "Other",
        "Other",
        Device::Other,
    );
}

#[test]
fn a_long_user_agent_is_cut_to_its_first_512_bytes() {
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    // 10 kB of padding after a browser's user agent, and 10 kB of one repeated byte.
    let padded = format!("{chrome} {}", "é".repeat(5_000));
    let flat = "a".repeat(10_240);
    let classifier = classifier(); // built before the clock starts
    for ua in [padded.as_str(), flat.as_str()] {
        let start = Instant::now();
        let got = classifier.agent(Some(ua));
        let took = start.elapsed();
        // The same answer as for the prefix alone: nothing past the cap was looked at.
        assert_eq!(got, agent(cap(ua)), "{}", &ua[..40]);
        // A generous bound (debug build, a busy machine): a call costs microseconds.
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    assert_eq!(agent(&padded).browser, "Chrome");
    assert!(!agent(&padded).bot);
    // One 10 kB token without spaces: isbot counts it as a bot (50+ bytes without a space).
    assert!(agent(&flat).bot);
}

#[test]
fn the_cap_keeps_whole_characters() {
    // 511 ASCII bytes then a 2-byte character: the cut falls inside it and moves back.
    let ua = format!("{}é", "a".repeat(511));
    assert_eq!(cap(&ua).len(), 511);
    let ua = format!("{}é", "a".repeat(510));
    assert_eq!(cap(&ua), ua);
    assert_eq!(cap("short"), "short");
}

#[test]
fn a_blank_family_is_other() {
    assert_eq!(known(None), "Other");
    assert_eq!(known(Some(Cow::Borrowed(" "))), "Other");
    assert_eq!(known(Some(Cow::Borrowed("Chrome"))), "Chrome");
}

#[test]
fn device_names_are_the_contracts() {
    let names: Vec<&str> = Device::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(names, ["desktop", "mobile", "tablet", "bot", "other"]);
    assert_eq!(Device::Tablet.to_string(), "tablet");
}

#[test]
fn the_bot_list_is_isbots_whole_list() {
    let patterns: Vec<String> = serde_json::from_str(ISBOT).unwrap();
    let list = BotList::new(&patterns).unwrap();
    // All but a handful run in `regex`; the rest (look-around) in fancy-regex.
    assert!(patterns.len() > 150, "{}", patterns.len());
    assert!(
        (1..=20).contains(&list.look_around.len()),
        "{}",
        list.look_around.len()
    );
    // The look-around patterns do their job: "cu" before "bot" (a Bitcoin client's "Cubot"
    // phone) is not a bot, "scan" after "cam" is not, "http" after "lib" is not.
    assert!(!list.is_bot("Mozilla/5.0 (Linux; Android 9; CUBOT X19)"));
    assert!(list.is_bot("Mozilla/5.0 (compatible; ExampleBot/1.0)"));
    assert!(!list.is_bot("Mozilla/5.0 camscanner (Windows NT 10.0)"));
    assert!(list.is_bot("Mozilla/5.0 (Windows NT 10.0) scanner"));
    assert!(!list.is_bot("Mozilla/5.0 (Windows NT 10.0) libhttp"));
    assert!(list.is_bot("Mozilla/5.0 (Windows NT 10.0) http-probe"));
    // Case-insensitive, as isbot is.
    assert!(list.is_bot("Mozilla/5.0 (compatible; EXAMPLEBOT/1.0)"));
    // Classes are ASCII, as in JavaScript: `\w` does not take "é", so this is no bare token.
    assert!(list.is_bot("abc"));
    assert!(!list.is_bot("éé"));
}

#[test]
fn every_plain_pattern_compiles_on_its_own() {
    let patterns: Vec<String> = serde_json::from_str(ISBOT).unwrap();
    let failing: Vec<String> = patterns
        .iter()
        .filter(|p| BotList::new(std::slice::from_ref(p)).is_err())
        .cloned()
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
}

#[test]
fn look_arounds_come_out_whole() {
    assert_eq!(without_look_around(r"(?<!cam)scan"), "scan");
    assert_eq!(
        without_look_around(r"(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))"),
        "google"
    );
    assert_eq!(
        without_look_around(r"(?:^|[^g])news(?!sapphire)"),
        "(?:^|[^g])news"
    );
    assert_eq!(without_look_around(r"a(?=[)(])b"), "ab");
    // An escaped parenthesis opens nothing.
    assert_eq!(without_look_around(r"\(?!x\)"), r"\(?!x\)");
    assert_eq!(without_look_around(r"\((?!x)"), r"\(");
    assert_eq!(without_look_around(r"[(?!]x"), r"[(?!]x");
    assert!(has_look_around("java(?!;)"));
    assert!(!has_look_around(r"\(\)"));
    // Every look-around pattern of the list has one hint, in the same order.
    let patterns: Vec<String> = serde_json::from_str(ISBOT).unwrap();
    let list = BotList::new(&patterns).unwrap();
    assert_eq!(list.hints.len(), list.look_around.len());
    // A list of look-around patterns only: no plain alternation, and it matches nothing else.
    let only = BotList::new(&["(?<!cam)scan".to_owned()]).unwrap();
    assert!(only.is_bot("Scanner/1"));
    assert!(!only.is_bot("camscan"));
    assert!(!only.is_bot("Mozilla/5.0"));
}

#[test]
fn class_dashes_follows_javascript() {
    assert_eq!(class_dashes(r"[\w\d-.]+"), r"[\w\d\-.]+");
    assert_eq!(class_dashes(r"[.-\d]"), r"[.\-\d]");
    assert_eq!(class_dashes(r"[a-z]-\d"), r"[a-z]-\d");
    assert_eq!(class_dashes(r"[\w\-]"), r"[\w\-]");
    assert!(matches!(class_dashes("plain"), Cow::Borrowed("plain")));
}

#[test]
fn referrer_hosts() {
    for (referrer, host) in [
        (None, "direct"),
        (Some(""), "direct"),
        (Some("   "), "direct"),
        (Some("https://WWW.Example.com/path"), "www.example.com"),
        (Some("http://example.com:8080/a?b=c#d"), "example.com"),
        (Some("https://user:pw@Sub.Example.ORG/"), "sub.example.org"),
        (
            Some("android-app://com.google.android.gm/"),
            "com.google.android.gm",
        ),
        (Some("android-app://COM.Example.App"), "com.example.app"),
        (Some("http://[::1]:3000/x"), "[::1]"),
        (Some("http://192.168.0.1/"), "192.168.0.1"),
        (Some("https://bücher.example/"), "xn--bcher-kva.example"),
        (Some("not a url"), "other"),
        (Some("/relative/path"), "other"),
        (Some("www.example.com/path"), "other"),
        (Some("about:blank"), "other"),
        (Some("mailto:someone@example.com"), "other"),
        (Some("data:text/plain,hi"), "other"),
        (Some("file:///etc/passwd"), "other"),
        (Some("http://"), "other"),
    ] {
        assert_eq!(referrer_host(referrer), host, "{referrer:?}");
    }
    let long = format!("https://{}.example/", "a".repeat(300));
    assert_eq!(referrer_host(Some(&long)), "other");
    let longest = format!("https://{}.com/", "a".repeat(MAX_HOST_BYTES - 4));
    assert_eq!(referrer_host(Some(&longest)).len(), MAX_HOST_BYTES);
}

/// tests/agents.json (data/fixture.py): user agents from uap-core's own test suites, with the
/// families those suites expect and the verdict of isbot itself (JavaScript) on each.
#[test]
fn agents_match_the_upstream_verdicts() {
    #[derive(serde::Deserialize)]
    struct Row {
        ua: String,
        isbot: bool,
        browser: Option<String>,
        os: Option<String>,
        device_family: Option<String>,
    }
    let rows: Vec<Row> = serde_json::from_str(include_str!("../tests/agents.json")).unwrap();
    let patterns: Vec<String> = serde_json::from_str(ISBOT).unwrap();
    let list = BotList::new(&patterns).unwrap();
    let uap = &classifier().uap;
    let family = |v: Option<Cow<'_, str>>| v.map_or("Other".to_owned(), Cow::into_owned);
    let (mut wrong, mut checks) = (Vec::new(), 0);
    let mut decided_by_look_around = [0, 0];
    for row in &rows {
        let ua = row.ua.as_str();
        let mut expect = |what: &str, want: &Option<String>, got: &dyn Fn() -> String| {
            if let Some(want) = want {
                checks += 1;
                let got = got();
                if &got != want {
                    wrong.push(format!(
                        "{what}: {got:?}, uap-core says {want:?}, for {ua:?}"
                    ));
                }
            }
        };
        expect("browser", &row.browser, &|| {
            family(uap.ua.extract(ua).map(|v| v.family))
        });
        expect("os", &row.os, &|| family(uap.os.extract(ua).map(|v| v.os)));
        expect("device", &row.device_family, &|| {
            family(uap.dev.extract(ua).map(|v| v.device))
        });
        if list.is_bot(ua) != row.isbot {
            wrong.push(format!(
                "bot list: {}, isbot says {}, for {ua:?}",
                !row.isbot, row.isbot
            ));
        }
        if !list.plain.is_match(ua.as_bytes()) && list.hints.is_match(ua.as_bytes()) {
            decided_by_look_around[usize::from(row.isbot)] += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} disagree:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
    assert!(
        rows.len() > 500 && checks > 500,
        "{} rows, {checks} checks",
        rows.len()
    );
    // The look-around stage decided some both ways.
    assert!(
        decided_by_look_around.iter().all(|&n| n >= 5),
        "{decided_by_look_around:?}"
    );
}
