//! A PostgreSQL of the chaos run's own, so the run can crash and restart it without
//! touching the cluster the rest of the test suite shares: `initdb` into a temporary
//! folder, `pg_ctl` to start it on a free port, and `pg_ctl -m immediate` to stop it the
//! way a crash would (no checkpoint: the restart replays the WAL).
//!
//! PostgreSQL refuses to run as root; as root the harness runs it as the `postgres` user
//! (Debian's packages create it) through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};

use crate::services::free_port;

/// A running private cluster; stopped and deleted on drop (its log is kept in the run's
/// folder).
pub(super) struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    keep_log: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PrivatePostgres {
    /// `initdb` and start a cluster on a free port; its log ends up in `run_dir`.
    pub fn start(run_dir: &Path, run_id: &str) -> anyhow::Result<Self> {
        let bin = binaries()?;
        let as_postgres_user = running_as_root();
        let data = std::env::temp_dir().join(format!("gpuq-chaos-pg-{run_id}"));
        std::fs::create_dir_all(&data)?;
        let pg = Self {
            bin,
            data,
            keep_log: run_dir.join("postgres.log"),
            port: free_port()?,
            as_postgres_user,
        };
        if as_postgres_user {
            run(Command::new("chown").arg("postgres:postgres").arg(&pg.data))?;
        }
        let data = pg.data.to_string_lossy().into_owned();
        run(pg
            .tool("initdb")
            .args(["-D", &data, "-U", "postgres", "-A", "trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]))?;
        pg.pg_ctl_start()?;
        Ok(pg)
    }

    /// Creates `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = PgConnection::connect(&self.url("postgres")).await?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await?;
        Ok(self.url(name))
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the cluster as a crash would and, after `down`, starts it again (crash
    /// recovery included) and waits until it accepts connections.
    pub async fn crash_and_restart(&self, down: std::time::Duration) -> anyhow::Result<()> {
        self.pg_ctl_stop("immediate")?;
        tokio::time::sleep(down).await;
        self.pg_ctl_start()
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let data = self.data.to_string_lossy();
        let options = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        run(self
            .tool("pg_ctl")
            .args(["-D", &data, "-l", &format!("{data}/server.log")])
            .args(["-o", &options, "-w", "-t", "60", "start"]))
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let data = self.data.to_string_lossy();
        run(self
            .tool("pg_ctl")
            .args(["-D", &data, "-m", mode, "-w", "-t", "60", "stop"]))
    }

    /// A PostgreSQL program, run as the `postgres` user when we are root.
    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Err(e) = self.pg_ctl_stop("fast") {
            eprintln!("chaos: stopping the private PostgreSQL: {e}");
        }
        let _ = std::fs::copy(self.data.join("server.log"), &self.keep_log);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Runs `cmd` to its end; an error carries what it printed.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{:?} {:?} failed ({}): {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The folder of `initdb` and `pg_ctl`: `GPUQ_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else the folder on `PATH` holding `pg_ctl`.
fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GPUQ_PG_BIN_DIR") {
        return Ok(dir.into());
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    let on_path = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|dir| dir.join("pg_ctl").is_file())
    };
    debian.or_else(on_path).ok_or_else(|| {
        anyhow::anyhow!(
            "no PostgreSQL server programs (initdb, pg_ctl) found: install the postgresql \
             package (deploy/local/services.sh does) or set GPUQ_PG_BIN_DIR"
        )
    })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
