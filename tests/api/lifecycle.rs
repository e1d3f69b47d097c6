//! The process's life: the embedded PostgreSQL starts and stops with `gitrev serve` (on SIGTERM and on
//! SIGINT, and for the harness's own servers also while their stdin stays open), its data survives a
//! restart, two services with their own data dirs run side by side, missing PostgreSQL binaries are a
//! clear error, production refuses `reset` and `seed`, concurrent `migrate`s apply each migration
//! once, and only a first start in development loads demo data.
//!
//! The embedded-cluster tests run `gitrev serve` without `DATABASE_URL`, each in a data dir of its own
//! named like the harness's (`gitrev-test-<pid>-…`), so a run that dies midway leaves nothing the next
//! run does not remove.

use std::fs;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use reqwest::Client;
use serde_json::json;

use crate::harness::{
    assert_cli_ok, client, connect, count_rows, fresh_database, gitrev, gitrev_with_env, id_of,
    launch, migrated_database, output_text, pid_exists, poll_blocking, seed_dir, serve_until_exit,
    start_server_on, str_of, tail, unique_email, Launch, TestDir, TestServer, EXIT_TIMEOUT,
};

/// A `gitrev serve` on its own embedded PostgreSQL (no `DATABASE_URL`), started as a supervisor would
/// start it: no `GITREV_STOP_ON_STDIN_EOF`, so only a signal stops it.
///
/// Stopped by the test with a signal; if the test fails first, dropping it sends SIGTERM and waits.
struct Standalone {
    srv: TestServer,
    data_dir: std::path::PathBuf,
    exited: bool,
}

impl Standalone {
    fn start(data_dir: &Path) -> Standalone {
        let srv = launch(Launch {
            dir: data_dir,
            database_url: None,
            env: &[],
            stop_on_stdin_eof: false,
            log_level: "info",
        })
        .unwrap_or_else(|why| {
            panic!(
                "{why}\n--- postgres.log ---\n{}",
                tail(&data_dir.join("postgres.log"), 4000)
            )
        });
        Standalone {
            srv,
            data_dir: data_dir.to_path_buf(),
            exited: false,
        }
    }

    fn log(&self) -> String {
        let mut text = fs::read_to_string(&self.srv.log).unwrap_or_default();
        text.push_str("\n--- postgres.log ---\n");
        text.push_str(&fs::read_to_string(self.data_dir.join("postgres.log")).unwrap_or_default());
        text
    }

    /// The port the embedded PostgreSQL listens on.
    fn database_port(&self) -> u16 {
        let config: tokio_postgres::Config = self
            .srv
            .database_url
            .parse()
            .expect("the ready file's database url parses");
        config.get_ports()[0]
    }

    /// The embedded postmaster's pid: the first line of `pg/postmaster.pid`.
    fn postmaster_pid(&self) -> i32 {
        let path = self.data_dir.join("pg").join("postmaster.pid");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid on the first line of {}: {text:?}", path.display()))
    }

    /// Sends `signal` to gitrev (not to PostgreSQL: that is gitrev's to stop) and waits for it to exit.
    fn stop_with(&mut self, signal: i32) -> ExitStatus {
        self.srv.signal(signal);
        let status = self.srv.wait_exit(EXIT_TIMEOUT);
        self.exited = status.is_some();
        status.unwrap_or_else(|| {
            panic!(
                "gitrev serve did not exit within {EXIT_TIMEOUT:?} of signal {signal}; the log:\n{}",
                self.log()
            )
        })
    }
}

impl std::ops::Deref for Standalone {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.srv
    }
}

impl Drop for Standalone {
    /// A failed test's clean-up: stop gitrev (which stops its PostgreSQL); kill it if it hangs, and
    /// then stop the PostgreSQL it leaves behind.
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        let postmaster = fs::read_to_string(self.data_dir.join("pg").join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        self.srv.signal(libc::SIGTERM);
        if self.srv.wait_exit(EXIT_TIMEOUT).is_none() {
            self.srv.signal(libc::SIGKILL);
            let _ = self.srv.wait_exit(EXIT_TIMEOUT);
            if let Some(postmaster) = postmaster.filter(|p| *p > 0 && pid_exists(*p)) {
                // SAFETY: the postmaster of the cluster this test started; SIGINT is a fast shutdown.
                unsafe { libc::kill(postmaster, libc::SIGINT) };
            }
        }
    }
}

/// Polls (at most 10 s) until `pid` no longer exists; whether it went.
fn wait_until_gone(pid: i32) -> bool {
    poll_blocking(
        Duration::from_secs(10),
        || pid_exists(pid),
        |exists| !exists,
    )
    .is_ok()
}

/// Starts a standalone server, checks it serves on its own PostgreSQL, stops it with `signal` and
/// checks that PostgreSQL went with it.
async fn signal_stops_the_embedded_postgres(signal: i32, name: &str) {
    let dir = TestDir::new("sig");
    let mut srv = Standalone::start(dir.path());
    let c = client();
    srv.get(&c, "/ready").await.expect(200, "GET /ready");
    let postgres = srv.postmaster_pid();
    assert!(
        pid_exists(postgres),
        "the postmaster {postgres} named in postmaster.pid runs while gitrev serves"
    );

    let status = srv.stop_with(signal);
    assert!(
        status.success(),
        "gitrev serve exits cleanly on {name}: {status}; the log:\n{}",
        srv.log()
    );
    assert!(
        wait_until_gone(postgres),
        "the embedded PostgreSQL (pid {postgres}) still runs after gitrev stopped on {name}"
    );
    assert!(
        !dir.path().join("pg").join("postmaster.pid").exists(),
        "PostgreSQL was shut down cleanly (it removes postmaster.pid), not killed"
    );
}

#[tokio::test]
async fn sigterm_stops_the_embedded_postgres() {
    signal_stops_the_embedded_postgres(libc::SIGTERM, "SIGTERM").await;
}

#[tokio::test]
async fn sigint_stops_the_embedded_postgres() {
    signal_stops_the_embedded_postgres(libc::SIGINT, "SIGINT").await;
}

/// The harness's own servers run with `GITREV_STOP_ON_STDIN_EOF=1`; a signal must still stop one
/// whose stdin stays open (a CI runner's SIGTERM, a Ctrl-C), not leave it hanging after its drain.
#[tokio::test]
async fn a_signal_stops_a_server_whose_stdin_stays_open() {
    let url = fresh_database("sig_stdin").await;
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let srv = start_server_on(&url, &[]);
        srv.get(&client(), "/ready").await.expect(200, "GET /ready");
        let status = srv.stop_with_signal(signal);
        assert!(status.success(), "a clean stop on {name}: {status}");
    }
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_the_data() {
    let dir = TestDir::new("restart");
    let c = client();
    let email = unique_email();
    let mut first = Standalone::start(dir.path());
    let created = first
        .post(&c, "/users", &json!({"username": "keeper", "email": email}))
        .await
        .expect(201, "POST /users");
    let id = id_of(&created.json);
    let status = first.stop_with(libc::SIGTERM);
    assert!(status.success(), "a clean stop: {status}");

    let mut second = Standalone::start(dir.path());
    let read = second
        .get(&c, &format!("/users/{id}"))
        .await
        .expect(200, "the user created before the restart");
    assert_eq!(str_of(&read.json, "email"), email);
    assert_eq!(read.json, created.json, "the same row, unchanged");
    let status = second.stop_with(libc::SIGTERM);
    assert!(status.success(), "a clean stop: {status}");
}

#[tokio::test]
async fn two_services_with_their_own_data_dirs_run_side_by_side() {
    let (dir_a, dir_b) = (TestDir::new("side_a"), TestDir::new("side_b"));
    let c = client();
    let mut a = Standalone::start(dir_a.path());
    let mut b = Standalone::start(dir_b.path());
    for (name, srv) in [("a", &a), ("b", &b)] {
        srv.get(&c, "/health")
            .await
            .expect(200, &format!("{name} /health"));
        srv.get(&c, "/ready")
            .await
            .expect(200, &format!("{name} /ready"));
    }
    assert_ne!(
        a.database_port(),
        b.database_port(),
        "each service runs its own PostgreSQL: {} vs {}",
        a.database_url,
        b.database_url
    );
    assert_ne!(a.listen_addr(), b.listen_addr());

    let email = unique_email();
    let user = a
        .post(&c, "/users", &json!({"username": "only_a", "email": email}))
        .await
        .expect(201, "POST /users on a");
    let id = id_of(&user.json);
    let on_b = b.get(&c, &format!("/users/{id}")).await;
    assert_eq!(on_b.status, 404, "a's user is not on b: {}", on_b.text);
    let list = b
        .get(&c, "/users?per_page=1")
        .await
        .expect(200, "GET /users on b");
    assert_eq!(list.total_count(), 0, "b's database has no users");
    b.post(&c, "/users", &json!({"username": "also_b", "email": email}))
        .await
        .expect(201, "the same email is free on b");

    for (name, srv) in [("a", &mut a), ("b", &mut b)] {
        let status = srv.stop_with(libc::SIGTERM);
        assert!(status.success(), "{name} stops cleanly: {status}");
    }
}

#[tokio::test]
async fn missing_postgres_binaries_are_one_clear_error() {
    let dir = TestDir::new("nobin");
    let (status, stderr) = serve_until_exit(
        dir.path(),
        &[("GITREV_PG_BIN", "/nonexistent")],
        Duration::from_secs(30),
    );
    assert!(
        !status.success() && status.code().is_some(),
        "a non-zero exit, not a signal: {status}; stderr: {stderr}"
    );
    assert!(
        stderr.contains("not found"),
        "stderr says the binaries were not found: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

async fn table_counts(url: &str) -> [i64; 3] {
    [
        count_rows(url, "users").await,
        count_rows(url, "urls").await,
        count_rows(url, "events").await,
    ]
}

#[tokio::test]
async fn production_refuses_reset_and_seed_without_allow_production() {
    let url = migrated_database("prod").await;
    let dir = seed_dir("gitrev");
    let dir = dir.to_str().expect("the seed path is UTF-8");
    let production = [("GITREV_ENV", "production")];

    let reset = gitrev_with_env(&["reset", "--dir", dir], &url, &production);
    let seed = gitrev_with_env(&["seed", "--dir", dir], &url, &production);
    for (what, output) in [("reset", &reset), ("seed", &seed)] {
        let text = output_text(output);
        assert!(
            !output.status.success(),
            "{what} is refused in production:\n{text}"
        );
        assert!(
            text.to_lowercase().contains("production"),
            "the refusal of {what} names production:\n{text}"
        );
        assert!(!text.contains("panicked"), "{what}: no panic:\n{text}");
    }
    assert_eq!(
        table_counts(&url).await,
        [0, 0, 0],
        "a refused reset/seed changes nothing"
    );

    // The flag is what was missing: with it, production seeds.
    assert_cli_ok(
        &gitrev_with_env(
            &["seed", "--dir", dir, "--allow-production"],
            &url,
            &production,
        ),
        "gitrev seed --allow-production in production",
    );
    assert!(
        count_rows(&url, "users").await > 0,
        "seed --allow-production loads the set"
    );
}

#[tokio::test]
async fn twenty_concurrent_migrates_apply_each_migration_once() {
    let url = fresh_database("migrate20").await;
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| gitrev(&["migrate"], &url)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a migrate thread does not panic"))
            .collect()
    });
    for (i, output) in outputs.iter().enumerate() {
        assert_cli_ok(output, &format!("concurrent gitrev migrate #{i}"));
    }

    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let files = fs::read_dir(&sql_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sql_dir.display()))
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".sql"))
        .count() as i64;
    assert!(files > 0, "sql/ holds the migrations");
    let db = connect(&url).await;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
            &[],
        )
        .await
        .expect("reading schema_migrations");
    let (rows, versions): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, files, "one schema_migrations row per file in sql/");
    assert_eq!(versions, files, "no migration recorded twice");
    assert_cli_ok(
        &gitrev(&["check-schema"], &url),
        "gitrev check-schema after the concurrent migrates",
    );
}

/// `x-total-count` of users, urls and events.
async fn api_counts(srv: &TestServer, c: &Client) -> [i64; 3] {
    let mut counts = [0; 3];
    for (count, path) in counts.iter_mut().zip(["/users", "/urls", "/events"]) {
        *count = srv
            .get(c, &format!("{path}?per_page=1"))
            .await
            .expect(200, path)
            .total_count();
    }
    counts
}

#[tokio::test]
async fn only_a_first_start_in_development_loads_demo_data() {
    let c = client();
    let development = [("GITREV_ENV", "development")];

    let url = fresh_database("devstart").await;
    let first = start_server_on(&url, &development);
    let loaded = api_counts(&first, &c).await;
    assert_eq!(
        loaded,
        [400, 2000, 3422],
        "the demo set (README: 400 users, 2000 urls, 3422 events)"
    );
    assert!(first.stop().success(), "a clean stop");

    let second = start_server_on(&url, &development);
    assert_eq!(
        api_counts(&second, &c).await,
        loaded,
        "a second start in development loads nothing again"
    );
    assert!(second.stop().success(), "a clean stop");

    let empty = fresh_database("teststart").await;
    let test = start_server_on(&empty, &[("GITREV_ENV", "test")]);
    assert_eq!(
        api_counts(&test, &c).await,
        [0, 0, 0],
        "GITREV_ENV=test loads no demo data"
    );
    assert!(test.stop().success(), "a clean stop");
}
