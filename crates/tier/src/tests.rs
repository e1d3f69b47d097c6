use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn origin() -> Origin {
    Origin {
        system_id: 7_312_345_678_901_234_567,
        database: "gitrev".into(),
        built_at_us: 1_764_720_000_000_000,
        snapshot: "6645:6650:6647".into(),
    }
}

fn link(i: usize) -> Link {
    Link {
        code: format!("c{i:06x}"),
        url_id: i as i64 + 1,
        user_id: (i % 3 != 0).then_some(i as i64 % 97 + 1),
        target: format!("https://example.com/landing/{i}?ref=tier"),
        active: i % 5 != 0,
        expires_at_us: (i % 4 == 0).then_some(1_800_000_000_000_000 + i as i64),
        expired_url: (i % 8 == 0).then(|| format!("https://example.com/gone/{i}")),
        redirect_status: (i % 6 == 0).then_some(301),
        forward_query: i % 2 == 0,
        limited: i % 7 == 0,
    }
}

fn open(links: Vec<Link>) -> (tempfile::TempDir, Tier, Built) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let built = write(&path, &origin(), links).expect("built");
    let tier = Tier::open(&path).expect("opens").expect("exists");
    (dir, tier, built)
}

#[test]
fn every_link_is_found_with_its_fields_and_others_are_not() {
    let links: Vec<Link> = (0..5_000).map(link).collect();
    let (_dir, tier, built) = open(links.clone());
    assert_eq!(tier.len(), 5_000);
    assert_eq!(built.links, 5_000);
    for l in &links {
        assert_eq!(tier.get(&l.code).map(|f| f.to_link()).as_ref(), Some(l));
    }
    for i in 5_000..10_000 {
        assert_eq!(tier.get(&link(i).code), None);
    }
    assert_eq!(tier.get(""), None);
    assert_eq!(tier.origin(), origin());
    assert!(tier.is_from(origin().system_id, "gitrev"));
    assert!(!tier.is_from(origin().system_id, "other"));
    assert!(!tier.is_from(1, "gitrev"));
    let mut all: Vec<Link> = tier.iter().map(|f| f.to_link()).collect();
    all.sort_by_key(|l| l.url_id);
    assert_eq!(all, links);
}

#[test]
fn an_empty_tier_opens_and_finds_nothing() {
    let (_dir, tier, _) = open(Vec::new());
    assert!(tier.is_empty());
    assert_eq!(tier.get("abc"), None);
}

#[test]
fn a_link_costs_at_most_64_bytes_beside_its_urls() {
    // Seven-character codes, as generated.
    let links: Vec<Link> = (0..100_000)
        .map(|i| Link {
            code: format!("{:07}", i * 7919 % 10_000_000),
            ..link(i)
        })
        .collect();
    let (_dir, tier, built) = open(links);
    assert_eq!(tier.file_bytes() as u64, built.file_bytes);
    let per_link = built.bytes_per_link();
    assert!(per_link <= 64.0, "{per_link} bytes per link");
}

#[test]
fn a_code_given_twice_or_too_long_is_refused() {
    let twice = vec![link(1), link(2), link(1)];
    assert!(matches!(
        build(&origin(), twice),
        Err(TierError::DuplicateCode(code)) if code == link(1).code
    ));
    let long = Link {
        code: "x".repeat(MAX_CODE_BYTES + 1),
        ..link(1)
    };
    assert!(matches!(
        build(&origin(), vec![long]),
        Err(TierError::LongCode(_))
    ));
}

/// The file streamed to disk is byte for byte the archive built in memory, whatever order the
/// links came in.
#[test]
fn the_streamed_file_is_the_archive_built_in_memory() {
    let links: Vec<Link> = (0..5_000).map(link).collect();
    let (in_memory, built) = build(&origin(), links.clone()).expect("built");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(FILE_NAME);
    let mut builder = Builder::new(origin());
    for link in links.iter().rev() {
        builder.push(link.as_ref()).expect("pushed");
    }
    assert_eq!(builder.len(), links.len());
    let written = builder.write(&path).expect("written");
    let on_disk = std::fs::read(&path).expect("read");
    assert_eq!(written.links, built.links);
    assert_eq!(written.file_bytes, on_disk.len() as u64);
    let tier = Tier::open(&path).expect("opens").expect("exists");
    for l in &links {
        assert_eq!(tier.get(&l.code), Some(l.as_ref()));
    }
    // Same records and index; the text may be in another order (the links came reversed).
    assert_eq!(in_memory.len(), on_disk.len());
    let reopened = {
        let p = dir.path().join("memory.tier");
        std::fs::write(&p, &in_memory).expect("written");
        Tier::open(&p).expect("opens").expect("exists")
    };
    let mut a: Vec<_> = reopened.iter().map(|l| l.to_link()).collect();
    let mut b: Vec<_> = tier.iter().map(|l| l.to_link()).collect();
    assert_eq!(
        a.iter().map(|l| &l.code).collect::<Vec<_>>(),
        b.iter().map(|l| &l.code).collect::<Vec<_>>(),
        "the same order of records"
    );
    a.sort_by(|x, y| x.code.cmp(&y.code));
    b.sort_by(|x, y| x.code.cmp(&y.code));
    assert_eq!(a, b);
}

#[test]
fn a_write_that_fails_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the tier should go: everything is written, then the rename fails.
    let path = dir.path().join("links.tier");
    std::fs::create_dir(&path).expect("a directory in the way");
    let mut builder = Builder::new(origin());
    builder.push(link(1).as_ref()).expect("a link");
    assert!(builder.write(&path).is_err());
    assert!(
        !temporary_path(&path).exists(),
        "the temporary file was removed"
    );
}

#[test]
fn a_missing_file_is_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(Tier::open(&dir.path().join("nothing.tier"))
        .expect("no error")
        .is_none());
}

#[test]
fn a_truncated_padded_or_corrupt_file_is_refused() {
    let (bytes, _) = build(&origin(), (0..1_000).map(link).collect()).expect("built");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("links.tier");
    let refused = |bytes: &[u8]| {
        fs::write(&path, bytes).expect("written");
        Tier::open(&path).expect_err("refused")
    };
    assert!(matches!(
        refused(&bytes[..bytes.len() - 1]),
        TierError::BadLength(..)
    ));
    assert!(matches!(
        refused(&[&bytes[..], &[0u8; 16]].concat()),
        TierError::BadLength(..)
    ));
    assert!(matches!(
        refused(&bytes[..HEADER - 1]),
        TierError::BadHeader(_)
    ));
    assert!(matches!(refused(b""), TierError::BadHeader(_)));
    let mut wrong_version = bytes.clone();
    wrong_version[8] ^= 0xff;
    assert!(matches!(refused(&wrong_version), TierError::BadHeader(_)));
    // One flipped bit anywhere in the payload: in a record, in the index, in the text.
    for at in [HEADER, HEADER + 100, bytes.len() / 2, bytes.len() - 1] {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        assert!(
            matches!(refused(&corrupt), TierError::BadChecksum(_)),
            "flip at {at}"
        );
    }
    // A payload that checksums but is not a tier (the header rewritten to match it).
    let mut forged = bytes.clone();
    for b in &mut forged[HEADER..] {
        *b = 0xff;
    }
    let sum = xxh3_64(&forged[HEADER..]).to_le_bytes();
    forged[24..32].copy_from_slice(&sum);
    assert!(matches!(refused(&forged), TierError::BadArchive(..)));
    // The intact bytes still open.
    fs::write(&path, &bytes).expect("written");
    assert_eq!(
        Tier::open(&path).expect("opens").expect("exists").len(),
        1_000
    );
}

#[test]
fn a_tier_replaced_by_rename_leaves_the_open_one_intact() {
    let (dir, old, _) = open((0..100).map(link).collect());
    let path = dir.path().join("links.tier");
    write(&path, &origin(), (100..300).map(link).collect()).expect("rebuilt");
    assert_eq!(old.len(), 100);
    assert!(old.get(&link(5).code).is_some());
    let new = Tier::open(&path).expect("opens").expect("exists");
    assert_eq!(new.len(), 200);
    assert!(new.get(&link(5).code).is_none());
    assert!(new.get(&link(150).code).is_some());
}

fn code() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9A-Za-z]{1,8}",
        "[a-z0-9_-]{1,32}",
        "\\PC{1,12}".prop_filter("fits a record", |s| s.len() <= MAX_CODE_BYTES),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any set of links: every code answers its own link, and any other string answers nothing.
    #[test]
    fn lookups_equal_a_map(
        codes in proptest::collection::hash_set(code(), 0..400),
        probes in proptest::collection::vec(code(), 0..200),
        seed in 0usize..1_000,
    ) {
        let links: Vec<Link> = codes
            .into_iter()
            .enumerate()
            .map(|(i, code)| Link { code, ..link(i + seed) })
            .collect();
        let expected: HashMap<String, Link> =
            links.iter().map(|l| (l.code.clone(), l.clone())).collect();
        let (_dir, tier, _) = open(links);
        prop_assert_eq!(tier.len(), expected.len());
        for (code, l) in &expected {
            prop_assert_eq!(tier.get(code).map(|f| f.to_link()), Some(l.clone()));
        }
        for probe in &probes {
            prop_assert_eq!(
                tier.get(probe).map(|f| f.to_link()),
                expected.get(probe).cloned()
            );
        }
    }
}
