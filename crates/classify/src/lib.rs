//! Click classification, done once when a click is recorded (docs/api.md, "Click analytics").
//!
//! - [`Classifier::agent`] turns a `user-agent` header into an [`Agent`]: a bot flag, the browser
//!   and OS families, and a device class.
//! - [`referrer_host`] turns a `referer` header into the host that breakdowns group by.
//!
//! Nothing here is a rule list of our own. Browser, OS and device come from uap-core's
//! `regexes.yaml` (the ua-parser project's rules, run by its Rust port, the `ua-parser` crate);
//! the bot flag from the pattern list of the `isbot` npm package (omrilotan/isbot), plus
//! uap-core's own crawler verdict (device family `Spider`). Both lists are vendored in `data/`
//! with their licences; `data/update.py` refreshes them and the crate's README says how.
//! The one thing this crate decides itself is how uap-core's device and OS families map onto
//! the five device classes (see [`Classifier::agent`]).
//!
//! Build the [`Classifier`] once per process ([`classifier`] does, lazily) and share it: it is
//! `Send + Sync`, and [`Classifier::agent`] takes `&self`. Building it compiles some 1,500
//! regular expressions (a few milliseconds in a release build, more in a debug build; the
//! crate's README has the numbers), and a call costs microseconds.

use std::borrow::Cow;
use std::sync::LazyLock;

use fancy_regex::Regex as FancyRegex;
use regex::bytes::{Regex as BytesRegex, RegexBuilder, RegexSet, RegexSetBuilder};

/// uap-core's rules, as JSON (converted from the `ua-parser-builtins` wheel by data/update.py).
const UAP_CORE: &str = include_str!("../data/uap-core.json");
/// isbot's patterns, a JSON array of regular expressions (JavaScript syntax).
const ISBOT: &str = include_str!("../data/isbot.json");

/// How much of a user agent is looked at, in bytes. Real browsers send well under this; the cap
/// keeps the cost of one call bounded whatever a client sends. A longer user agent is cut at the
/// last character boundary before the cap and classified on that prefix.
pub const MAX_USER_AGENT_BYTES: usize = 512;

/// The longest host [`referrer_host`] returns: a DNS name has at most 253 characters. A longer
/// one is not a real host and counts as `other`.
pub const MAX_HOST_BYTES: usize = 253;

/// What a user agent says about the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The user agent is absent or empty, or is on the bot list.
    pub bot: bool,
    /// uap-core's browser family (`Chrome`, `Mobile Safari`, `Firefox`, `Googlebot`, `curl`…),
    /// `Other` when unknown.
    pub browser: String,
    /// uap-core's OS family (`Windows`, `Mac OS X`, `iOS`, `Android`, `Linux`…), `Other` when
    /// unknown.
    pub os: String,
    pub device: Device,
}

/// The device class of a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
    /// Every bot, whatever it runs on.
    Bot,
    /// Known to be something else (a TV, a console, a watch…) or not known at all.
    Other,
}

impl Device {
    /// Every class, in the order of the contract.
    pub const ALL: [Device; 5] = [
        Device::Desktop,
        Device::Mobile,
        Device::Tablet,
        Device::Bot,
        Device::Other,
    ];

    /// The lower-case name the API uses: `desktop`, `mobile`, `tablet`, `bot`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The process-wide classifier, built on first use.
pub fn classifier() -> &'static Classifier {
    static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(Classifier::new);
    &CLASSIFIER
}

/// Classifies user agents. Build once, share (`Send + Sync`), call [`Classifier::agent`].
pub struct Classifier {
    uap: ua_parser::Extractor<'static>,
    bots: BotList,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// Compiles the vendored rules. They are part of the build and the tests compile them, so a
    /// failure here is a broken build of this crate, and it panics.
    pub fn new() -> Self {
        let regexes: ua_parser::Regexes<'static> =
            serde_json::from_str(UAP_CORE).expect("data/uap-core.json is uap-core's rules");
        let uap = ua_parser::Extractor::try_from(regexes).expect("uap-core's rules compile");
        let patterns: Vec<String> =
            serde_json::from_str(ISBOT).expect("data/isbot.json is a list of patterns");
        let bots = BotList::new(&patterns).expect("isbot's patterns compile");
        Classifier { uap, bots }
    }

    /// Classifies one user agent (at most its first [`MAX_USER_AGENT_BYTES`] bytes).
    ///
    /// - `bot`: absent or empty, on isbot's list, or a crawler to uap-core.
    /// - `browser`, `os`: uap-core's families, `Other` when it has none.
    /// - `device`, first that applies: a bot is `bot`. `tablet`: uap-core's device is an iPad, a
    ///   Kindle, a generic tablet or names a tablet, or the OS is Android without the `Mobi`
    ///   token (Android phones' browsers send `Mobile`, tablets' do not; uap-core's own generic
    ///   Android tablet rule rests on the same convention). `mobile`: the `Mobi` token (the test
    ///   MDN recommends), uap-core's iPhone/iPod/generic phone devices, or a phone OS (iOS,
    ///   Android, Windows Phone, BlackBerry, KaiOS, Symbian…). `desktop`: a desktop OS (Windows,
    ///   macOS, Chrome OS, Linux and its distributions, the BSDs, Solaris) on no particular
    ///   device. Anything else (TVs, consoles, unknown agents) is `other`.
    ///
    /// Known limit: iPadOS Safari asks for desktop pages with a Mac user agent, so it is a
    /// desktop here, as it is to every user-agent parser.
    pub fn agent(&self, user_agent: Option<&str>) -> Agent {
        let Some(ua) = user_agent.map(cap).filter(|ua| !ua.is_empty()) else {
            return Agent {
                bot: true,
                browser: OTHER.to_owned(),
                os: OTHER.to_owned(),
                device: Device::Bot,
            };
        };
        let (browser, os, device) = self.uap.extract(ua);
        // A rule whose `$1` captured nothing names no family either.
        let browser = known(browser.map(|b| b.family));
        let os = known(os.map(|o| o.os));
        let (family, brand, model) = device.map_or((Cow::Borrowed(OTHER), None, None), |d| {
            (d.device, d.brand, d.model)
        });
        let bot = family == "Spider" || self.bots.is_bot(ua);
        let device = if bot {
            Device::Bot
        } else {
            device_class(ua, &os, &family, brand.as_deref(), model.as_deref())
        };
        Agent {
            bot,
            browser: browser.into_owned(),
            os: os.into_owned(),
            device,
        }
    }
}

const OTHER: &str = "Other";

/// A family, or `Other` when there is none or it is blank.
fn known(family: Option<Cow<'_, str>>) -> Cow<'_, str> {
    family
        .filter(|f| !f.trim().is_empty())
        .unwrap_or(Cow::Borrowed(OTHER))
}

/// The first [`MAX_USER_AGENT_BYTES`] bytes of `ua`, cut at a character boundary.
fn cap(ua: &str) -> &str {
    if ua.len() <= MAX_USER_AGENT_BYTES {
        return ua;
    }
    let mut end = MAX_USER_AGENT_BYTES;
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// OS families (uap-core's names) that run on phones.
const PHONE_OS: &[&str] = &[
    "iOS",
    "Android",
    "Windows Phone",
    "Windows Mobile",
    "BlackBerry OS",
    "KaiOS",
    "Firefox OS",
    "Symbian OS",
    "Symbian^3",
    "Symbian^3 Anna",
    "Symbian^3 Belle",
    "Nokia Series 40",
    "Nokia Series 30 Plus",
    "Brew MP",
    "BREW",
    "Bada",
    "Sailfish",
    "MeeGo",
    "Maemo",
];

/// OS families (uap-core's names) that run on desktops and laptops.
const DESKTOP_OS: &[&str] = &[
    "Windows",
    "Mac OS X",
    "Mac OS",
    "Chrome OS",
    "Linux",
    "Ubuntu",
    "Kubuntu",
    "Lubuntu",
    "Linux Mint",
    "Debian",
    "Fedora",
    "Red Hat",
    "CentOS",
    "Gentoo",
    "Arch Linux",
    "Slackware",
    "openSUSE",
    "SUSE",
    "Mageia",
    "Mandriva",
    "PCLinuxOS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
];

/// uap-core's device families that are phones.
const PHONE_DEVICE: &[&str] = &[
    "iPhone",
    "iPod",
    "iPod Touch",
    "Generic Smartphone",
    "Generic Feature Phone",
];

/// See [`Classifier::agent`] for the rules, in this order.
fn device_class(
    ua: &str,
    os: &str,
    family: &str,
    brand: Option<&str>,
    model: Option<&str>,
) -> Device {
    let names_tablet = |s: &str| s.contains("Tablet") || s.starts_with("Kindle");
    let tablet = family == "iPad"
        || names_tablet(family)
        || model.is_some_and(names_tablet)
        || brand == Some("Generic_Android_Tablet")
        || os == "BlackBerry Tablet OS"
        || (os == "Android" && !ua.contains("Mobi"));
    if tablet {
        return Device::Tablet;
    }
    if ua.contains("Mobi") || PHONE_DEVICE.contains(&family) || PHONE_OS.contains(&os) {
        return Device::Mobile;
    }
    if DESKTOP_OS.contains(&os) && (family == OTHER || family == "Mac") {
        return Device::Desktop;
    }
    Device::Other
}

/// isbot's list: any pattern that matches, case-insensitively, makes a bot. isbot joins the
/// patterns into one JavaScript regular expression. Here the ones `regex` can run (all but a
/// handful) form one `regex` alternation, with ASCII classes as in JavaScript; the few with
/// look-around run in `fancy-regex`, each on its own, and only when the same pattern without
/// its look-arounds (which can only match more) matches: most user agents never get that far.
struct BotList {
    plain: BytesRegex,
    /// `look_around[i]` without its look-arounds, for a quick "cannot match".
    hints: RegexSet,
    look_around: Vec<FancyRegex>,
}

impl BotList {
    fn new(patterns: &[String]) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (fancy, plain): (Vec<&String>, Vec<&String>) =
            patterns.iter().partition(|p| has_look_around(p));
        let joined = plain
            .iter()
            .map(|p| format!("(?:{})", class_dashes(p)))
            .collect::<Vec<_>>()
            .join("|");
        // An empty alternation would match everything: never build one.
        let joined = if joined.is_empty() {
            "[^\\x00-\\xff]".to_owned()
        } else {
            joined
        };
        let plain = RegexBuilder::new(&joined)
            .case_insensitive(true)
            .unicode(false)
            .size_limit(64 << 20)
            .build()?;
        let hints = RegexSetBuilder::new(
            fancy
                .iter()
                .map(|p| class_dashes(&without_look_around(p)).into_owned()),
        )
        .case_insensitive(true)
        .unicode(false)
        .build()?;
        let look_around = fancy
            .iter()
            .map(|p| fancy_regex::RegexBuilder::new(&format!("(?i){p}")).build())
            .collect::<Result<_, _>>()?;
        Ok(BotList {
            plain,
            hints,
            look_around,
        })
    }

    fn is_bot(&self, ua: &str) -> bool {
        if self.plain.is_match(ua.as_bytes()) {
            return true;
        }
        // A pattern that fails at run time (fancy-regex's backtracking limit) is not a match.
        self.hints
            .matches(ua.as_bytes())
            .iter()
            .any(|i| self.look_around[i].is_match(ua).unwrap_or(false))
    }
}

fn has_look_around(pattern: &str) -> bool {
    ["(?=", "(?!", "(?<=", "(?<!"]
        .iter()
        .any(|l| pattern.contains(l))
}

/// `pattern` with its look-around groups taken out: it matches wherever `pattern` does.
fn without_look_around(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let starts_look_around = |i: usize| {
        let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
        ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .any(|l| rest.starts_with(l))
    };
    let mut out = String::with_capacity(pattern.len());
    let (mut in_class, mut i) = (false, 0);
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class && starts_look_around(i) => {
                // Skip to the matching parenthesis.
                let (mut depth, mut class) = (0usize, false);
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 1,
                        '[' if !class => class = true,
                        ']' if class => class = false,
                        '(' if !class => depth += 1,
                        ')' if !class => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// JavaScript reads a `-` next to a class escape inside brackets (`[\w\d-.]`) as a plain `-`;
/// `regex` refuses it as a range. Escape those; leave every other character as it is.
fn class_dashes(pattern: &str) -> Cow<'_, str> {
    let chars: Vec<char> = pattern.chars().collect();
    let is_class_escape =
        |i: usize| i + 1 < chars.len() && chars[i] == '\\' && "dDwWsS".contains(chars[i + 1]);
    let mut out = String::with_capacity(pattern.len());
    let (mut in_class, mut changed, mut i) = (false, false, 0);
    let mut after_class_escape = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            after_class_escape = in_class && is_class_escape(i);
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '-' if in_class && (after_class_escape || is_class_escape(i + 1)) => {
                out.push_str("\\-");
                changed = true;
                after_class_escape = false;
                i += 1;
                continue;
            }
            _ => {}
        }
        after_class_escape = false;
        out.push(c);
        i += 1;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(pattern)
    }
}

/// The host a `referer` header names, for breakdowns:
/// - absent or blank: `direct`;
/// - a URL with a host: the host, lower-case (`https://WWW.Example.com/x` → `www.example.com`;
///   `android-app://com.google.android.gm/` → `com.google.android.gm`; an IPv6 host keeps its
///   brackets; an international name is in its `xn--` form, as the `url` crate gives it);
/// - anything else (not an absolute URL, as `not a url` or `/path`; a URL without a host, as
///   `about:blank` or `mailto:a@b.c`; a host longer than [`MAX_HOST_BYTES`]): `other`.
pub fn referrer_host(referrer: Option<&str>) -> String {
    let referrer = match referrer.map(str::trim) {
        None | Some("") => return "direct".to_owned(),
        Some(r) => r,
    };
    match url::Url::parse(referrer) {
        Ok(url) => match url.host_str() {
            Some(host) if !host.is_empty() && host.len() <= MAX_HOST_BYTES => {
                host.to_ascii_lowercase()
            }
            _ => "other".to_owned(),
        },
        Err(_) => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests;
