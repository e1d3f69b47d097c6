//! The embedded PostgreSQL: when no `DATABASE_URL` is given, gitrev runs its own private cluster.
//!
//! The cluster lives in `<data dir>/pg`, is created with `initdb` on first use (password auth,
//! the password kept in `<data dir>/pg.password`), and is started on a free loopback port (the
//! previous start's, kept in `<data dir>/pg.port`, while it is free) with no Unix socket, so two services with different data dirs run side by side. The server runs in its
//! own process group: a Ctrl-C in the terminal reaches gitrev, which drains its work and only then
//! stops PostgreSQL. If gitrev was killed without stopping it, the next start finds the running
//! server through `postmaster.pid` and adopts it. PostgreSQL refuses to run as root, so as root the
//! cluster is owned by and run as the `postgres` user (or `nobody`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitrev_core::retry::{self, BlockingRetryable, Retryable};
use rand::distr::{Alphanumeric, SampleString};
use tokio::task::JoinHandle;
use tracing::{info, warn};

const SUPERUSER: &str = "gitrev";
const DATABASE: &str = "gitrev";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dropping a server that was not stopped (an error path) waits for the fast shutdown
/// before killing it: a `Drop` cannot wait as long as [`EmbeddedPostgres::stop`].
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a killed server may take to be gone (and reaped).
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often readiness and exit are looked at while waiting for them.
const START_POLL: Duration = Duration::from_millis(50);
const EXIT_POLL: Duration = Duration::from_millis(20);

/// Why the server does not take connections yet.
enum NotReady {
    /// It exited: no point waiting.
    Exited(std::process::ExitStatus),
    Connect(tokio_postgres::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("PostgreSQL server binaries (initdb, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql`), point GITREV_PG_BIN at their directory, or set DATABASE_URL to an existing database")]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("initdb failed (exit {status}): {output}")]
    Initdb { status: String, output: String },
    #[error("PostgreSQL did not start: {0}")]
    Start(String),
    #[error(
        "running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL as"
    )]
    NoUnprivilegedUser,
}

/// One connection, driven on a task the caller joins once it has dropped the client (the store
/// has its own pool; this crate sits below nothing and asks nothing of it).
async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(err) = connection.await {
            warn!(error = %err, "database connection closed");
        }
    });
    Ok((client, driver))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// The directory holding `initdb` and `postgres`.
pub fn find_binaries(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = configured {
        return if has_both(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(EmbeddedError::NotInstalled)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(EmbeddedError::NotInstalled)
}

/// Who PostgreSQL runs as when gitrev is root.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>, EmbeddedError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in [c"postgres", c"nobody"] {
        // SAFETY: getpwnam takes a NUL-terminated name and returns null or a pointer to a static
        // record, read at once before any other call could overwrite it.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: checked non-null above.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some(RunAs { uid, gid }));
        }
    }
    Err(EmbeddedError::NoUnprivilegedUser)
}

fn command(bin: &Path, program: &str, run_as: Option<RunAs>) -> Command {
    let mut cmd = Command::new(bin.join(program));
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    // Keep PostgreSQL out of our terminal's process group: we stop it after draining our own work.
    cmd.process_group(0);
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

/// A running private PostgreSQL server. `Debug` leaves out its password.
pub struct EmbeddedPostgres {
    /// The server process when we started it; `None` when we adopted one left running.
    child: Option<Child>,
    pid: i32,
    port: u16,
    password: String,
    /// Set once stopped, and from the start when the server belongs to another live gitrev
    /// process (a `gitrev seed` next to a running `gitrev serve`): that one stops it, not us.
    stopped: bool,
    /// `<data dir>/gitrev.owner`: the pid of the gitrev process responsible for stopping it.
    owner_file: PathBuf,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("password", &"***")
            .field("stopped", &self.stopped)
            .field("owner_file", &self.owner_file)
            .finish_non_exhaustive()
    }
}

fn free_port() -> Result<u16, EmbeddedError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// A server still running from an earlier gitrev that did not stop it: (pid, port).
fn running_server(cluster: &Path) -> Option<(i32, u16)> {
    let text = fs::read_to_string(cluster.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    (pid_alive(pid) && comm.trim() == "postgres").then_some((pid, port))
}

/// PostgreSQL's own default `shared_buffers` (128 MB) and the most the embedded cluster takes
/// unless told otherwise.
const SHARED_BUFFERS_MIN_MB: u32 = 128;
const SHARED_BUFFERS_MAX_MB: u32 = 1024;

/// A quarter of the memory this process may use (the cgroup's limit when there is one, else the
/// machine's), between 128 MB and 1 GB: PostgreSQL's own advice for a server of its own, capped
/// because the embedded one shares the machine with gitrev. The memory is only touched as pages
/// are read, so an idle or small database costs no more than with the 128 MB default.
fn default_shared_buffers_mb() -> u32 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let cgroup = fs::read_to_string("/sys/fs/cgroup/memory.max").unwrap_or_default();
    shared_buffers_for(&meminfo, &cgroup)
}

fn shared_buffers_for(meminfo: &str, cgroup_max: &str) -> u32 {
    let machine = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let limit = cgroup_max.trim().parse::<u64>().ok();
    let bytes = match (machine, limit) {
        (Some(m), Some(l)) => m.min(l),
        (m, l) => m.or(l).unwrap_or(0),
    };
    let quarter_mb = bytes / 4 / (1024 * 1024);
    quarter_mb.clamp(SHARED_BUFFERS_MIN_MB.into(), SHARED_BUFFERS_MAX_MB.into()) as u32
}

/// Starts `postgres` on `cluster` and `port`, its output appended to `log_path`.
fn spawn_postgres(
    bin: &Path,
    cluster: &Path,
    port: u16,
    shared_buffers_mb: u32,
    run_as: Option<RunAs>,
    log_path: &Path,
) -> Result<Child, EmbeddedError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io(format!("opening {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io("duplicating the log handle"))?;
    let child = command(bin, "postgres", run_as)
        .arg("-D")
        .arg(cluster)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=300"])
        .args(["-c", &format!("shared_buffers={shared_buffers_mb}MB")])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io("starting postgres"))?;
    info!(port, pid = child.id(), cluster = %cluster.display(), shared_buffers_mb,
        "started embedded PostgreSQL");
    Ok(child)
}

impl EmbeddedPostgres {
    /// Creates the cluster if needed, starts it (or adopts one already running on it) and makes
    /// sure the `gitrev` database exists.
    /// `shared_buffers_mb`: PostgreSQL's buffer cache; `None` sizes it to the machine
    /// ([`default_shared_buffers_mb`]). A server adopted from an earlier start keeps its own.
    pub async fn start(
        data_dir: &Path,
        pg_bin: Option<&Path>,
        shared_buffers_mb: Option<u32>,
    ) -> Result<Self, EmbeddedError> {
        let bin = find_binaries(pg_bin)?;
        let shared_buffers_mb = shared_buffers_mb.unwrap_or_else(default_shared_buffers_mb);
        let run_as = run_as()?;
        fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io(format!("resolving {}", data_dir.display())))?;
        let cluster = data_dir.join("pg");
        let password_file = data_dir.join("pg.password");
        if !cluster.join("PG_VERSION").exists() {
            init_cluster(&bin, &cluster, &password_file, run_as).await?;
        }
        let password = fs::read_to_string(&password_file)
            .map_err(io(format!(
                "reading {} (the embedded cluster's password; delete {} to start over)",
                password_file.display(),
                cluster.display()
            )))?
            .trim()
            .to_owned();

        let owner_file = data_dir.join("gitrev.owner");
        let mut server = if let Some((pid, port)) = running_server(&cluster) {
            let owner = fs::read_to_string(&owner_file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|owner| *owner != std::process::id() as i32 && pid_alive(*owner));
            match owner {
                Some(owner) => info!(
                    pid,
                    port, owner, "using the embedded PostgreSQL of a running gitrev"
                ),
                None => info!(
                    pid,
                    port, "adopting the embedded PostgreSQL left running by an earlier start"
                ),
            }
            EmbeddedPostgres {
                child: None,
                pid,
                port,
                password,
                stopped: owner.is_some(),
                owner_file,
            }
        } else {
            // The port of the last start when it is still free, so URLs handed out stay good
            // across restarts; else a fresh one.
            let port_file = data_dir.join("pg.port");
            let port = fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
                .filter(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
                .map_or_else(free_port, Ok)?;
            fs::write(&port_file, port.to_string())
                .map_err(io(format!("writing {}", port_file.display())))?;
            let child = spawn_postgres(
                &bin,
                &cluster,
                port,
                shared_buffers_mb,
                run_as,
                &data_dir.join("postgres.log"),
            )?;
            EmbeddedPostgres {
                pid: child.id() as i32,
                child: Some(child),
                port,
                password,
                stopped: false,
                owner_file,
            }
        };
        if !server.stopped {
            fs::write(&server.owner_file, std::process::id().to_string())
                .map_err(io(format!("writing {}", server.owner_file.display())))?;
        }
        let log = data_dir.join("postgres.log");
        let mut attempts = 1;
        while let Err(err) = server.wait_ready(&log).await {
            // The port was free when picked, but something (another test's outgoing connection,
            // another service starting) may have taken it before postgres bound it: pick again.
            let port_taken =
                matches!(&err, EmbeddedError::Start(why) if why.contains("Address already in use"));
            if !port_taken || server.child.is_none() || attempts >= 5 {
                server.stop().await;
                return Err(err);
            }
            attempts += 1;
            let port = free_port()?;
            warn!(
                port,
                "the embedded PostgreSQL's port was taken; retrying on another"
            );
            fs::write(data_dir.join("pg.port"), port.to_string()).map_err(io("writing pg.port"))?;
            server.child = Some(spawn_postgres(
                &bin,
                &cluster,
                port,
                shared_buffers_mb,
                run_as,
                &log,
            )?);
            server.pid = server.child.as_ref().map_or(0, |c| c.id() as i32);
            server.port = port;
            server.stopped = false;
        }
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The URL of the service's database on this server.
    pub fn database_url(&self) -> String {
        self.url_for(DATABASE)
    }

    async fn wait_ready(&mut self, log: &Path) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let admin: tokio_postgres::Config = self
            .url_for("postgres")
            .parse()
            .expect("the embedded URL is well-formed");
        let admin = &admin;
        let child = &mut self.child;
        let connected = (|| {
            let exited = child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            async move {
                if let Some(status) = exited {
                    return Err(NotReady::Exited(status));
                }
                connect(admin).await.map_err(NotReady::Connect)
            }
        })
        .retry(retry::backoff(START_POLL, START_POLL))
        .when(|why| matches!(why, NotReady::Connect(_)) && Instant::now() <= deadline)
        .await;
        let (client, driver) = match connected {
            Ok(connected) => connected,
            Err(NotReady::Exited(status)) => {
                self.stopped = true;
                return Err(EmbeddedError::Start(format!(
                    "postgres exited with {status}; its log says:\n{}",
                    tail(log, 20)
                )));
            }
            Err(NotReady::Connect(err)) => {
                return Err(EmbeddedError::Start(format!(
                    "no connection within {START_TIMEOUT:?}: {err}; its log says:\n{}",
                    tail(log, 20)
                )))
            }
        };
        let created = async {
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
                .await?
                .is_some();
            if !exists {
                client
                    .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                    .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }
        .await;
        drop(client);
        let _ = driver.await;
        created.map_err(|e| EmbeddedError::Start(e.to_string()))
    }

    /// Stops the server with a fast shutdown (SIGINT), escalating to SIGKILL if it hangs.
    pub async fn stop(&mut self) {
        self.stop_within(STOP_TIMEOUT).await;
    }

    async fn stop_within(&mut self, within: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.signal(libc::SIGINT);
        if !self.exited_within(within).await {
            warn!(
                pid = self.pid,
                "PostgreSQL did not stop in time; killing it"
            );
            self.signal(libc::SIGKILL);
            self.exited_within(KILL_WAIT).await;
        }
        let _ = fs::remove_file(&self.owner_file);
        info!(pid = self.pid, "stopped embedded PostgreSQL");
    }

    /// [`EmbeddedPostgres::stop`] without a runtime (for `Drop`), its waits bounded the same way.
    fn stop_blocking(&mut self, within: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.signal(libc::SIGINT);
        if !self.exited_within_blocking(within) {
            warn!(
                pid = self.pid,
                "PostgreSQL did not stop in time; killing it"
            );
            self.signal(libc::SIGKILL);
            self.exited_within_blocking(KILL_WAIT);
        }
        let _ = fs::remove_file(&self.owner_file);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to a pid we started or adopted.
        unsafe { libc::kill(self.pid, signal) };
    }

    /// Waits up to `within` for the server to be gone (reaping our child); `true` when it is.
    async fn exited_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        (|| {
            let running = self.is_running();
            async move {
                if running {
                    Err(())
                } else {
                    Ok(())
                }
            }
        })
        .retry(retry::backoff(EXIT_POLL, EXIT_POLL))
        .when(|()| Instant::now() < deadline)
        .await
        .is_ok()
    }

    fn exited_within_blocking(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        (|| if self.is_running() { Err(()) } else { Ok(()) })
            .retry(retry::backoff(EXIT_POLL, EXIT_POLL))
            .sleep(std::thread::sleep)
            .when(|()| Instant::now() < deadline)
            .call()
            .is_ok()
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => pid_alive(self.pid),
        }
    }
}

impl Drop for EmbeddedPostgres {
    /// A last resort for error paths: never leave a server running behind us, and never hang
    /// here either (SIGINT, at most [`DROP_STOP_TIMEOUT`], then SIGKILL).
    fn drop(&mut self) {
        self.stop_blocking(DROP_STOP_TIMEOUT);
    }
}

async fn init_cluster(
    bin: &Path,
    cluster: &Path,
    password_file: &Path,
    run_as: Option<RunAs>,
) -> Result<(), EmbeddedError> {
    if cluster.exists() {
        // A half-made cluster from an interrupted initdb: start over.
        fs::remove_dir_all(cluster).map_err(io(format!("removing {}", cluster.display())))?;
    }
    fs::create_dir_all(cluster).map_err(io(format!("creating {}", cluster.display())))?;
    fs::set_permissions(cluster, fs::Permissions::from_mode(0o700))
        .map_err(io("setting the cluster's permissions"))?;
    let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(password_file)
        .map_err(io(format!("writing {}", password_file.display())))?;
    file.write_all(password.as_bytes())
        .map_err(io(format!("writing {}", password_file.display())))?;
    // initdb reads the password from a file it must be able to open as its own user.
    let pwfile = cluster.with_extension("pwfile");
    fs::write(&pwfile, &password).map_err(io("writing the initdb password file"))?;
    fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))
        .map_err(io("setting the password file's permissions"))?;
    if let Some(user) = run_as {
        for path in [cluster, pwfile.as_path()] {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(io(format!(
                "handing {} to the postgres user",
                path.display()
            )))?;
        }
    }
    info!(cluster = %cluster.display(), "creating the embedded PostgreSQL cluster");
    // On the runtime, not blocking one of its threads for the second or two initdb takes.
    let output = tokio::process::Command::from(command(bin, "initdb", run_as))
        .arg("-D")
        .arg(cluster)
        .args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let _ = fs::remove_file(&pwfile);
    let output = output.map_err(io("running initdb"))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        if run_as.is_some() {
            text.push_str(
                " (running as root, the cluster belongs to the postgres user: every directory above the data directory must be reachable by it)",
            );
        }
        let _ = fs::remove_dir_all(cluster);
        return Err(EmbeddedError::Initdb {
            status: output.status.to_string(),
            output: text,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_buffers_take_a_quarter_of_the_memory_within_bounds() {
        let gib = |n: u64| format!("MemTotal:       {} kB\nMemFree: 1 kB\n", n * 1024 * 1024);
        // A quarter of the machine, capped at 1 GB...
        assert_eq!(shared_buffers_for(&gib(2), "max\n"), 512);
        assert_eq!(shared_buffers_for(&gib(24), "max\n"), 1024);
        // ...or of the cgroup's limit when that is lower...
        let limit = (1024u64 * 1024 * 1024).to_string();
        assert_eq!(shared_buffers_for(&gib(24), &limit), 256);
        // ...and never below PostgreSQL's default, even when nothing can be read.
        assert_eq!(shared_buffers_for(&gib(0), ""), 128);
        assert_eq!(shared_buffers_for("", ""), 128);
        assert_eq!(shared_buffers_for("MemTotal: lots\n", "max"), 128);
    }

    #[test]
    fn debug_leaves_out_the_password() {
        let mut s = server(false);
        s.password = "pg-secret-9931".into();
        let shown = format!("{s:?}");
        assert!(!shown.contains("pg-secret-9931"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        s.stop_blocking(Duration::from_secs(5));
    }

    /// A stand-in server: `sh` running `sleep`, SIGINT ignored when `stubborn`.
    fn server(stubborn: bool) -> EmbeddedPostgres {
        let script = if stubborn {
            "trap '' INT; exec sleep 60"
        } else {
            "exec sleep 60"
        };
        let child = Command::new("sh")
            .args(["-c", script])
            .spawn()
            .expect("sh runs");
        // Let the shell set its trap before we signal it.
        std::thread::sleep(Duration::from_millis(100));
        EmbeddedPostgres {
            pid: child.id() as i32,
            child: Some(child),
            port: 0,
            password: String::new(),
            stopped: false,
            owner_file: std::env::temp_dir().join(format!(
                "gitrev-embedded-test-{}-{stubborn}.owner",
                std::process::id()
            )),
        }
    }

    #[test]
    fn a_drop_stops_a_server_that_was_not_stopped() {
        let server = server(false);
        let pid = server.pid;
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!pid_alive(pid), "the server was reaped");
    }

    #[test]
    fn a_server_ignoring_the_shutdown_signal_is_killed_within_the_bound() {
        let mut server = server(true);
        let pid = server.pid;
        let started = Instant::now();
        server.stop_blocking(Duration::from_millis(300));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(300) + KILL_WAIT, "{took:?}");
        assert!(!pid_alive(pid), "killed and reaped");
    }

    #[tokio::test]
    async fn stop_kills_a_server_ignoring_the_shutdown_signal() {
        let mut server = server(true);
        let pid = server.pid;
        let started = Instant::now();
        server.stop_within(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(300) + KILL_WAIT, "{took:?}");
        assert!(!pid_alive(pid), "killed and reaped");
        assert!(server.stopped);
    }

    #[tokio::test]
    async fn a_server_that_exits_during_the_wait_is_reported_not_waited_for() {
        let child = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh runs");
        let mut server = EmbeddedPostgres {
            pid: child.id() as i32,
            child: Some(child),
            port: free_port().expect("a free port"),
            password: "x".into(),
            stopped: false,
            owner_file: std::env::temp_dir().join(format!(
                "gitrev-embedded-test-{}-exit.owner",
                std::process::id()
            )),
        };
        let started = Instant::now();
        let err = server
            .wait_ready(Path::new("/nonexistent/postgres.log"))
            .await
            .expect_err("the server is gone");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("postgres exited with"), "{err}");
        assert!(server.stopped);
    }
}
