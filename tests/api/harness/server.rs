//! Process control: starting `gitrev serve` and stopping it.
//!
//! One shared server serves the whole run ([`server`]): it is started lazily by whichever test asks
//! first and lives in a static for the rest of the process. It is spawned with `std::process` (not
//! `tokio::process`) because each `#[tokio::test]` has its own runtime and the server must outlive all
//! of them. It is never killed: its stdin is a pipe that only this process holds, and the server stops
//! itself (and its embedded PostgreSQL) when that pipe closes, which the kernel does when the test
//! process exits, however it exits.
//!
//! A test that needs a server of its own starts one on a database of its own ([`start_server_on`]);
//! it stops the same way when its [`TestServer`] is dropped. A test that needs a server the way a
//! supervisor runs it (no stdin to close, only signals) uses [`launch`] directly.
//!
//! Every directory a test makes is named `gitrev-test-<pid>-…` ([`TestDir`], [`test_dir`]), so the
//! next run removes whatever a run that died left behind.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::fixtures::unique;
use super::poll::poll_blocking;

/// How long a server may take to initdb, start PostgreSQL, migrate and listen.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to drain and exit once it was told to stop.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `gitrev serve`.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// The database this server uses (for the shared server, its embedded cluster's `gitrev` database).
    pub database_url: String,
    /// Where its standard output and error go.
    pub log: PathBuf,
    /// Holds the child so it is not reaped early.
    child: Mutex<Child>,
    /// Never written to: closing it (dropping the server, or the test process exiting) stops a server
    /// started with `stop_on_stdin_eof`. `None` for one that only a signal stops.
    stdin: Mutex<Option<ChildStdin>>,
}

/// How to start a `gitrev serve`.
pub struct Launch<'a> {
    /// Its `GITREV_DATA_DIR`; the ready file and `server.log` go there too.
    pub dir: &'a Path,
    /// `None`: it starts (or adopts) an embedded PostgreSQL in `dir`.
    pub database_url: Option<&'a str>,
    /// Settings of the test's own, applied last (they may override the ones above).
    pub env: &'a [(&'a str, &'a str)],
    /// `GITREV_STOP_ON_STDIN_EOF`: the harness's own servers stop when the test process goes.
    pub stop_on_stdin_eof: bool,
    /// `GITREV_LOG`.
    pub log_level: &'a str,
}

static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

/// The shared server, started on first use. A failed start is remembered, so the rest of the run fails
/// at once with the same message instead of each test waiting for its own timeout.
pub fn server() -> &'static TestServer {
    let started = SERVER.get_or_init(|| {
        // In the background: a run's cluster is most of a gigabyte, and no test waits for it to go.
        std::thread::spawn(remove_stale_dirs);
        start_in_fresh_dir("main", None, &[])
    });
    match started {
        Ok(server) => server,
        Err(why) => panic!("the shared gitrev server did not start: {why}"),
    }
}

/// Another `gitrev serve` on `database_url`, with its own data dir and ready file. It stops when the
/// returned value is dropped.
pub fn start_server_on(database_url: &str, extra_env: &[(&str, &str)]) -> TestServer {
    // The shared cluster must exist first: every database of a test of its own lives there.
    let _ = server();
    start_in_fresh_dir(&unique("srv"), Some(database_url), extra_env)
        .unwrap_or_else(|why| panic!("gitrev serve on {database_url} did not start: {why}"))
}

fn start_in_fresh_dir(
    name: &str,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> Result<TestServer, String> {
    let dir = test_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    launch(Launch {
        dir: &dir,
        database_url,
        env,
        stop_on_stdin_eof: true,
        log_level: "warn",
    })
}

/// Starts `gitrev serve` as `how` says and waits (at most `READY_TIMEOUT`) for its ready file.
pub fn launch(how: Launch<'_>) -> Result<TestServer, String> {
    let ready_file = how.dir.join("ready.json");
    // A ready file from an earlier start on this dir must not be taken for this one's.
    let _ = fs::remove_file(&ready_file);
    let log_path = how.dir.join("server.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cloning server.log: {e}"))?;

    let mut cmd = bare_gitrev_command();
    cmd.arg("serve");
    if let Some(url) = how.database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.env("GITREV_DATA_DIR", how.dir)
        .env("GITREV_LISTEN", "127.0.0.1:0")
        .env("GITREV_ENV", "test")
        .env("GITREV_LOG", how.log_level)
        .env("GITREV_READY_FILE", &ready_file)
        // Clicks are written within 50 ms rather than the default 250: tests wait on them often,
        // and none of them is about the database's cost per click. A test's own setting wins.
        .env("GITREV_CLICK_FLUSH_MS", "50");
    if how.stop_on_stdin_eof {
        cmd.env("GITREV_STOP_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    for (key, value) in how.env {
        cmd.env(key, value);
    }
    cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log_err));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", env!("CARGO_BIN_EXE_gitrev")))?;
    let stdin = child.stdin.take();

    let started = poll_blocking(
        READY_TIMEOUT,
        || {
            if let Some(ready) = read_ready_file(&ready_file) {
                return Some(Ok(ready));
            }
            match child.try_wait() {
                Ok(Some(status)) => Some(Err(format!("exited with {status}"))),
                Err(e) => Some(Err(format!("could not be waited for: {e}"))),
                Ok(None) => None,
            }
        },
        Option::is_some,
    );
    let why = match started {
        Ok(Some(Ok((listen, database_url)))) => {
            return Ok(TestServer {
                base: format!("http://{listen}"),
                database_url,
                log: log_path,
                child: Mutex::new(child),
                stdin: Mutex::new(stdin),
            })
        }
        Ok(Some(Err(why))) => why,
        Ok(None) | Err(_) => {
            // Nothing else will stop it: a server without stdin only stops on a signal.
            // SAFETY: a signal to our own child, still running, so the pid is its own.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            format!("wrote no {} within {READY_TIMEOUT:?}", ready_file.display())
        }
    };
    Err(format!(
        "gitrev serve {why} before it was ready; {} ends with:\n{}",
        log_path.display(),
        tail(&log_path, 4000)
    ))
}

impl TestServer {
    /// The address the server listens on (`127.0.0.1:PORT`, from its ready file), as `--listen` takes it.
    pub fn listen_addr(&self) -> &str {
        self.base
            .strip_prefix("http://")
            .expect("the base is http://IP:PORT")
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.listen_addr()
            .parse()
            .expect("the listen address is IP:PORT")
    }

    /// The server's process id, for signals.
    pub fn pid(&self) -> i32 {
        let child = self
            .child
            .lock()
            .expect("no test panics while holding the child");
        i32::try_from(child.id()).expect("process ids fit in an i32")
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.pid();
        // SAFETY: a signal to the child this value owns and has not yet reaped, so the pid is its own.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits (at most `limit`) for the server to exit: its status, or `None` while it still runs.
    pub fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self
            .child
            .lock()
            .expect("no test panics while holding the child");
        wait_for_exit(&mut child, limit)
    }

    /// Closes the server's stdin, its signal to drain and stop, and waits for it to exit.
    pub fn stop(self) -> ExitStatus {
        drop(self.close_stdin());
        self.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!("gitrev serve did not stop within {EXIT_TIMEOUT:?} of its stdin closing")
        })
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits, at most 30 s, for the server to exit. Its stdin stays
    /// open until then, so the signal alone is what stops it (and nothing else may keep it running).
    pub fn stop_with_signal(self, signal: i32) -> ExitStatus {
        self.signal(signal);
        if let Some(status) = self.wait_exit(Duration::from_secs(30)) {
            return status;
        }
        drop(self.close_stdin());
        let after_eof = self.wait_exit(EXIT_TIMEOUT);
        panic!(
            "gitrev serve did not exit within 30 s of signal {signal} while its stdin stayed open; \
             after its stdin was closed: {}",
            match after_eof {
                Some(status) => format!("it exited ({status})"),
                None => "it still runs".to_string(),
            }
        )
    }

    /// Sends `signal`, waits (at most 60 s) until the server has taken it, seen from outside as its
    /// listener going away, then closes its stdin and waits (at most 60 s) for it to exit.
    ///
    /// With stdin still open when the listener closed, the signal is what started the graceful stop (the
    /// drain, the shutdown order); closing stdin afterwards only releases the blocking stdin read that
    /// `GITREV_STOP_ON_STDIN_EOF` starts, which otherwise keeps the process from exiting (see
    /// `stop_with_signal` and the lifecycle test that holds stdin open).
    pub fn stop_after_signal(self, signal: i32) -> ExitStatus {
        self.signal(signal);
        self.wait_until_refused(Duration::from_secs(60));
        self.stop()
    }

    /// Polls until a fresh TCP connection to the server is refused (its listener is gone).
    pub fn wait_until_refused(&self, within: Duration) {
        let address = self.socket_addr();
        poll_blocking(
            within,
            || std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok(),
            |accepted| !accepted,
        )
        .unwrap_or_else(|_| panic!("gitrev serve still accepts connections after {within:?}"));
    }

    fn close_stdin(&self) -> Option<ChildStdin> {
        self.stdin
            .lock()
            .expect("no test panics while holding stdin")
            .take()
    }
}

/// Polls `child` until it exits (its status) or `limit` passes (`None`, the child left running).
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    poll_blocking(
        limit,
        || match child.try_wait() {
            Ok(status) => status,
            Err(e) => panic!("waiting for pid {pid}: {e}"),
        },
        Option::is_some,
    )
    .ok()
    .flatten()
}

/// Whether a process with this id exists (a zombie counts until it is reaped).
pub fn pid_exists(pid: i32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// `gitrev` with none of this shell's gitrev settings (no `GITREV_*`, no `DATABASE_URL`): the caller says
/// exactly what it wants.
pub fn bare_gitrev_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitrev"));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("GITREV_")) {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("DATABASE_URL");
    cmd
}

/// Runs `gitrev serve` (data dir and ready file in `dir`, listening on a free port, then `env`)
/// expecting it to exit on its own within `within` without ever being ready: its exit status and
/// standard error. Fails if it is still running then (and stops it), or if it wrote the ready file.
pub fn serve_until_exit(
    dir: &Path,
    env: &[(&str, &str)],
    within: Duration,
) -> (ExitStatus, String) {
    let mut cmd = bare_gitrev_command();
    cmd.arg("serve")
        .env("GITREV_DATA_DIR", dir)
        .env("GITREV_LISTEN", "127.0.0.1:0")
        .env("GITREV_ENV", "test")
        .env("GITREV_READY_FILE", dir.join("ready.json"));
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning gitrev serve");
    let Some(status) = wait_for_exit(&mut child, within) else {
        // SAFETY: our own child, still running, so the pid is its own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = wait_for_exit(&mut child, EXIT_TIMEOUT);
        panic!("gitrev serve with {env:?} was still running after {within:?}");
    };
    let output = child.wait_with_output().expect("reading the output");
    assert!(
        !dir.join("ready.json").exists(),
        "gitrev serve with {env:?} reported itself ready"
    );
    (status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A directory named like the harness's own (`gitrev-test-<pid>-<name>`), so a run that dies before
/// removing it has it removed by the next run's stale-directory cleanup.
pub fn test_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gitrev-test-{}-{name}", std::process::id()))
}

/// A fresh directory of the test's own (see [`test_dir`]), removed when the test passes (kept for a look
/// when it fails; the next run's stale-directory cleanup removes it then).
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(what: &str) -> TestDir {
        let dir = test_dir(&unique(what));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as UTF-8, for settings such as `GITREV_DATA_DIR`.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("the temporary directory is UTF-8")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes `gitrev-test-<pid>-*` directories left by test runs whose process is gone (never this
/// process's own, so it may run beside the tests).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("gitrev-test-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid <= 0 || pid as u32 == own || pid_exists(pid) {
            continue;
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn read_ready_file(path: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(path).ok()?;
    let ready: Value = serde_json::from_str(&text).ok()?;
    let listen = ready.get("listen")?.as_str()?.to_string();
    let url = ready.get("database_url")?.as_str()?.to_string();
    Some((listen, url))
}

/// The last `max` bytes of a text file (of a log, for a failure message).
pub fn tail(path: &Path, max: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}
