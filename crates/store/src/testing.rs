//! Throwaway PostgreSQL clusters for tests (cargo feature `testing`): Debian's `postgresql`
//! package (`scripts/setup-postgres.sh`) started in a temporary directory on a Unix socket only,
//! as the `postgres` user when the tests run as root (initdb and postgres refuse root), stopped
//! on drop. Starting one takes about a second.
//!
//! Another crate's tests use it through
//! `mofang-store = { workspace = true, features = ["testing"] }` in `[dev-dependencies]`:
//!
//! ```ignore
//! let pg = tokio::task::spawn_blocking(mofang_store::testing::TestPostgres::start).await?;
//! let store = mofang_store::Store::open(&pg.fresh_database()).await?;
//! // keep `pg` alive as long as the store is used
//! ```
//!
//! Without PostgreSQL installed, [`TestPostgres::start`] panics saying how to install it: a test
//! that needs PostgreSQL fails rather than passing without it. `MOFANG_PG_BIN` overrides the
//! directory of the server binaries (default: the newest `/usr/lib/postgresql/*/bin`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running cluster; [`TestPostgres::fresh_database`] makes an empty database in it.
#[derive(Debug)]
pub struct TestPostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// URL of the cluster's `postgres` database.
    pub url: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory of Debian's PostgreSQL server binaries (the newest installed version).
pub fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("MOFANG_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl TestPostgres {
    /// Starts a cluster. Panics with what to do when PostgreSQL is not installed: tests that
    /// need it must not pass silently without it.
    pub fn start() -> TestPostgres {
        let bin = find_bin().unwrap_or_else(|| {
            panic!("PostgreSQL is not installed: run scripts/setup-postgres.sh (Debian's postgresql package)")
        });
        let dir = tempfile::Builder::new()
            .prefix("mofang-pg")
            .tempdir()
            .expect("a temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(
                status.success(),
                "cannot chown the cluster directory to postgres"
            );
        }
        // The server listens on a Unix socket in its own directory only, so the port just
        // names the socket file and cannot collide with another cluster.
        let port = 5432;
        let pg = TestPostgres {
            url: format!(
                "postgres://postgres@localhost/postgres?host={}&port={port}",
                dir.path().display()
            ),
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.run_ok(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let log = pg.dir.path().join("postgres.log");
        let socket_dir = pg.dir.path().display().to_string();
        let port_text = port.to_string();
        pg.run_ok(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &format!(
                    "-k {socket_dir} -p {port_text} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                ),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pg
            .command("pg_isready", &["-h", &socket_dir, "-p", &port_text, "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not become ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates an empty database with a random name (`t_` and 16 hex digits) and returns its
    /// URL: one cluster can serve many independent tests.
    pub fn fresh_database(&self) -> String {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("randomness for a database name");
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.database(&format!("t_{name}"))
    }

    /// Creates an empty database named `name` and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let socket_dir = self.dir.path().display().to_string();
        let port = self.port.to_string();
        self.run_ok(
            "psql",
            &[
                "-h",
                &socket_dir,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                &format!("CREATE DATABASE \"{name}\""),
            ],
        );
        format!("postgres://postgres@localhost/{name}?host={socket_dir}&port={port}")
    }

    /// The cluster's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
