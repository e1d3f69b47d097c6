//! The tier's rules against a model of the database: any interleaving of writes, announcements
//! (delivered late, or lost with the LISTEN connection), catch-ups and rebuilds, and every answer
//! the tier gives equals the database's, except for a code whose announcement is still on its way
//! (as with the cache, the window is the announcement's delay).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gitrev_tier::Origin;
use proptest::prelude::*;

use super::*;

const CODES: usize = 4;

fn code(i: usize) -> String {
    format!("c{i}")
}

/// The database: links, the change log (commit number, code; "" for all), the announcements.
#[derive(Default)]
struct Model {
    links: BTreeMap<String, u32>,
    log: Vec<(u64, String)>,
    commits: u64,
    in_flight: VecDeque<String>,
    listening: bool,
    version: u32,
}

impl Model {
    fn commit(&mut self, code: &str) {
        self.commits += 1;
        self.log.push((self.commits, code.to_owned()));
        if self.listening {
            self.in_flight.push_back(code.to_owned());
        }
    }

    fn changes_since(&self, snapshot: &str) -> Changes {
        let since: u64 = snapshot.parse().expect("a model snapshot");
        let mut codes: BTreeSet<String> = self
            .log
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, c)| c.clone())
            .collect();
        let everything = codes.remove("");
        Changes {
            codes,
            everything,
            snapshot: self.commits.to_string(),
        }
    }

    fn target(version: u32) -> String {
        format!("https://example.com/v{version}")
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Delete(usize),
    Truncate,
    Deliver(usize),
    DropListen,
    Reconnect,
    RebuildBegins,
    /// The rebuild has written its tier and reads the change log since its snapshot...
    RebuildReadsLog,
    /// ...and swaps it in (writes and announcements may come in between).
    RebuildSwaps,
    Lookup(usize),
}

/// Where a rebuild is.
enum Rebuild {
    Reading(u64, BTreeMap<String, u32>),
    Read(Tier, Changes),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..CODES).prop_map(Op::Put),
        2 => (0..CODES).prop_map(Op::Delete),
        1 => Just(Op::Truncate),
        6 => (1..6usize).prop_map(Op::Deliver),
        1 => Just(Op::DropListen),
        2 => Just(Op::Reconnect),
        2 => Just(Op::RebuildBegins),
        2 => Just(Op::RebuildReadsLog),
        2 => Just(Op::RebuildSwaps),
        8 => (0..CODES).prop_map(Op::Lookup),
    ]
}

fn tier_of(dir: &std::path::Path, n: usize, snapshot: u64, links: &BTreeMap<String, u32>) -> Tier {
    let path = dir.join(format!("t{n}.tier"));
    let origin = Origin {
        system_id: 1,
        database: "model".into(),
        built_at_us: 0,
        snapshot: snapshot.to_string(),
    };
    let links = links
        .iter()
        .enumerate()
        .map(|(i, (code, version))| gitrev_tier::Link {
            code: code.clone(),
            url_id: i as i64 + 1,
            user_id: None,
            target: Model::target(*version),
            active: true,
            expires_at_us: None,
            expired_url: None,
            redirect_status: None,
            forward_query: false,
            limited: false,
        })
        .collect();
    gitrev_tier::write(&path, &origin, links).expect("written");
    Tier::open(&path).expect("opens").expect("exists")
}

fn run(ops: &[Op]) -> Result<usize, TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut db = Model::default();
    let state = TierState::default();
    let mut rebuild: Option<Rebuild> = None;
    let mut built = 0;
    let mut answered = 0;
    for op in ops {
        match op {
            Op::Put(i) => {
                db.version += 1;
                let v = db.version;
                db.links.insert(code(*i), v);
                db.commit(&code(*i));
            }
            Op::Delete(i) => {
                if db.links.remove(&code(*i)).is_some() {
                    db.commit(&code(*i));
                }
            }
            Op::Truncate => {
                db.links.clear();
                db.commit("");
            }
            Op::Deliver(n) => {
                for _ in 0..*n {
                    match db.in_flight.pop_front() {
                        Some(c) if c.is_empty() => state.everything_changed(),
                        Some(c) => state.announced(&c),
                        None => break,
                    }
                }
            }
            Op::DropListen => {
                db.listening = false;
                db.in_flight.clear();
                state.listen_lost();
            }
            Op::Reconnect => {
                if !db.listening {
                    db.listening = true;
                    state.listen_up();
                }
                if let Some(from) = state.read_to() {
                    let changes = db.changes_since(&from);
                    state.caught_up(&from, &changes);
                }
            }
            Op::RebuildBegins => {
                if rebuild.is_none() {
                    state.rebuild_begins();
                    rebuild = Some(Rebuild::Reading(db.commits, db.links.clone()));
                }
            }
            Op::RebuildReadsLog => {
                if let Some(Rebuild::Reading(snapshot, links)) = rebuild.take() {
                    built += 1;
                    let tier = tier_of(dir.path(), built, snapshot, &links);
                    let changes = db.changes_since(&snapshot.to_string());
                    rebuild = Some(Rebuild::Read(tier, changes));
                }
            }
            Op::RebuildSwaps => match rebuild.take() {
                Some(Rebuild::Read(tier, changes)) => state.rebuilt(tier, &changes),
                other => rebuild = other,
            },
            Op::Lookup(i) => {
                let c = code(*i);
                // A change still on its way may be answered from before it, as by the cache.
                let pending = db.in_flight.iter().any(|p| p == &c || p.is_empty());
                let truth = db.links.get(&c).map(|v| Model::target(*v));
                let seen = state.lookup(&c, |answer| match answer {
                    Answer::Ask => None,
                    Answer::Absent => Some(None),
                    Answer::Found(found) => Some(Some(found.target.to_owned())),
                });
                if let Some(seen) = seen {
                    answered += 1;
                    if !pending {
                        prop_assert_eq!(seen, truth, "{} after {:?}", c, ops);
                    }
                }
            }
        }
    }
    Ok(answered)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_interleaving_answers_like_the_database(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}

/// The scenario the property test is mostly there for, spelled out: a tier trusted, a link
/// changed, the tier answering for it only until the announcement lands, and a rebuild under
/// changes that keeps every answer right.
#[test]
fn a_change_bypasses_the_tier_and_a_rebuild_keeps_it_bypassed() {
    let ops = [
        Op::Put(1),
        Op::Put(2),
        Op::Reconnect,
        Op::RebuildBegins,
        Op::Put(1), // after the rebuild's snapshot: not in the new tier
        Op::RebuildReadsLog,
        Op::RebuildSwaps,
        Op::Lookup(1), // the log read at the swap names it: asked, not answered
        Op::Lookup(2), // answered from the tier
        Op::Lookup(3), // absent, without a query
        Op::DropListen,
        Op::Put(2),    // its announcement is lost
        Op::Lookup(2), // not trusted until caught up
        Op::Reconnect,
        Op::Lookup(2), // the log names it
    ];
    let answered = run(&ops).expect("every answer right");
    assert_eq!(answered, 2, "the tier answered for c2 and c3 only");
}

#[test]
fn a_tier_is_not_trusted_before_it_has_caught_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let links: BTreeMap<String, u32> = [(code(1), 1)].into();
    let state = TierState::with_tier(tier_of(dir.path(), 1, 5, &links));
    let ask = |state: &TierState| state.lookup(&code(1), |a| a == Answer::Ask);
    assert!(ask(&state));
    let changes = Changes {
        codes: BTreeSet::new(),
        everything: false,
        snapshot: "6".into(),
    };
    // An answer read without LISTEN up is ignored.
    assert!(!state.caught_up("5", &changes));
    assert!(ask(&state));
    state.listen_up();
    // An answer for another snapshot is ignored.
    assert!(!state.caught_up("4", &changes));
    assert!(state.caught_up("5", &changes));
    assert!(!ask(&state));
    assert_eq!(state.read_to().as_deref(), Some("6"));
}

/// A change committed after the rebuild read the log, and announced before the swap: only the
/// journal carries it to the new tier.
#[test]
fn an_announcement_between_the_log_read_and_the_swap_reaches_the_new_tier() {
    let ops = [
        Op::Reconnect,
        Op::Put(1),
        Op::Deliver(1),
        Op::RebuildBegins,
        Op::RebuildReadsLog,
        Op::Put(1),
        Op::Deliver(1),
        Op::RebuildSwaps,
        Op::Lookup(1),
    ];
    run(&ops).expect("every answer right");
}

/// LISTEN down when a rebuild begins and back before it ends: what was announced meanwhile is
/// lost, so the new tier waits for a catch-up.
#[test]
fn a_rebuild_begun_without_listen_is_not_trusted_at_once() {
    let ops = [
        Op::Reconnect,
        Op::DropListen,
        Op::RebuildBegins,
        Op::RebuildReadsLog,
        Op::Put(2),    // announced to no one
        Op::Reconnect, // listening again, but the rebuild's log read is older than the Put
        Op::RebuildSwaps,
        Op::Lookup(2),
    ];
    run(&ops).expect("every answer right");
}

/// The tables emptied while a rebuild was reading: what it read is void, even though its log
/// read came before the truncate.
#[test]
fn a_truncate_during_a_rebuild_voids_it() {
    let ops = [
        Op::Reconnect,
        Op::Put(1),
        Op::Deliver(1),
        Op::RebuildBegins,
        Op::RebuildReadsLog,
        Op::Truncate,
        Op::Deliver(1),
        Op::RebuildSwaps,
        Op::Lookup(1),
    ];
    let answered = run(&ops).expect("every answer right");
    assert_eq!(answered, 0, "no tier answers until one is rebuilt");
}
