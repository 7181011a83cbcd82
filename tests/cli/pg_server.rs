//! A real PostgreSQL server for the fleet tests: Debian's `postgresql` package, `initdb`
//! into a temp dir as an unprivileged user (initdb refuses root), `pg_ctl start` on a
//! unix socket in that dir. One server serves every test of this binary run, each test
//! in a database of its own; a test that must kill its server starts its own.
//!
//! The server outlives no test run: a watchdog shell stops it (and removes its dir) as
//! soon as the test process is gone, whichever way it ends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running server.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<String>,
}

static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// Where Debian keeps the server binaries (the newest version installed).
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed (/usr/lib/postgresql: {e})"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "PostgreSQL is not installed (no initdb)".to_owned())
}

/// Runs `cmd` as `user` (via runuser) when given.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

impl PgServer {
    /// The server shared by this test binary run, or why there is none.
    pub fn shared() -> Result<&'static PgServer, String> {
        SHARED
            .get_or_init(PgServer::start)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts a server of its own (for a test that stops and restarts it).
    pub fn start() -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let is_root = nix::unistd::geteuid().is_root();
        let user = is_root.then(|| "nobody".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("runner-pg-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod: {e}"))?;
        let data = dir.join("data");
        let mut initdb = as_user(user.as_deref(), &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "runner", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // initdb writes to /dev/null as the unprivileged user; where /dev/null is not
        // writable by others (seen in some containers), give it a private one.
        let null_ok =
            std::fs::metadata("/dev/null").is_ok_and(|m| m.permissions().mode() & 0o002 != 0);
        let out = if is_root && !null_ok {
            let null = dir.join("null");
            let made = Command::new("mknod")
                .args(["-m", "666"])
                .arg(&null)
                .args(["c", "1", "3"])
                .status()
                .map_err(|e| format!("mknod: {e}"))?;
            if !made.success() {
                return Err("/dev/null is not writable and mknod failed".to_owned());
            }
            let script = format!("mount --bind {} /dev/null && exec \"$@\"", null.display());
            let mut cmd = Command::new("unshare");
            cmd.args(["-m", "sh", "-c", &script, "sh"])
                .arg(initdb.get_program())
                .args(initdb.get_args())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.output()
        } else {
            initdb.output()
        }
        .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let server = PgServer { dir, bin, user };
        server.pg_ctl_start()?;
        server.watch();
        Ok(server)
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = as_user(self.user.as_deref(), &self.bin.join("pg_ctl"));
        cmd.arg("-D").arg(self.dir.join("data"));
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_connections=200",
            self.dir.display()
        );
        let out = self
            .pg_ctl()
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Stops the server at once, as a crash would.
    pub fn kill(&self) {
        let status = self
            .pg_ctl()
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl stop");
        assert!(status.success(), "pg_ctl stop failed");
    }

    /// Starts it again after [`PgServer::kill`].
    pub fn restart(&self) {
        self.pg_ctl_start().expect("pg_ctl start");
    }

    /// A watchdog that stops the server and removes its dir when this process is gone
    /// (the shell backgrounds it and exits at once, so nothing is left to reap).
    fn watch(&self) {
        let ctl = match &self.user {
            Some(user) => format!("runuser -u {user} -- {}", self.bin.join("pg_ctl").display()),
            None => self.bin.join("pg_ctl").display().to_string(),
        };
        let script = format!(
            "(while kill -0 {pid} 2>/dev/null; do sleep 1; done; {ctl} -D {data} -m immediate stop; rm -rf {dir}) </dev/null >/dev/null 2>&1 &",
            pid = std::process::id(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        // Its own process group: a test's signals to runner never reach it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let status = cmd.status().expect("watchdog");
        assert!(status.success(), "watchdog");
    }

    /// A fresh, empty database; returns its libpq key=value DSN.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.dsn(&name)
    }

    /// The key=value DSN of database `name`.
    pub fn dsn(&self, name: &str) -> String {
        format!("host={} user=runner dbname={name}", self.dir.display())
    }

    /// Runs SQL with psql in database `db` and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-U",
                "runner",
                "-d",
                db,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The shared server, or a printed SKIPPED line and `None`.
pub fn shared_or_skip(test: &str) -> Option<&'static PgServer> {
    match PgServer::shared() {
        Ok(server) => Some(server),
        Err(reason) => {
            crate::support::skip(format!("{test}: no PostgreSQL server: {reason}"));
            None
        }
    }
}

/// The database name in a DSN made by [`PgServer::database`].
pub fn db_name(dsn: &str) -> &str {
    dsn.rsplit("dbname=").next().expect("dbname")
}
