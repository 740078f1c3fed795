//! A PostgreSQL cluster (or a MariaDB server) and a NATS server of the run's own, in a temporary directory on free
//! loopback ports, so crashing and stopping them touches nothing else on the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::BoxError;

/// Sends `signal` (a name such as `STOP`) to `pid` with kill(1).
pub(crate) fn signal(pid: u32, signal: &str) -> Result<(), BoxError> {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s {signal} {pid} failed").into())
    }
}

/// Sends `how` to a server process and waits for it to exit (SIGKILL after 30 s).
async fn stop_child(child: Option<Child>, how: &str) -> Result<(), BoxError> {
    if let Some(mut child) = child {
        if let Some(pid) = child.id() {
            signal(pid, how)?;
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            child.kill().await?;
        }
    }
    Ok(())
}

/// An empty directory of this run's own under the temporary directory.
fn fresh_dir(what: &str) -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("outbox-chaos-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A free TCP port on 127.0.0.1 (free when asked; taken by the caller right after).
pub(crate) fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_file(path: &Path) -> Result<Stdio, BoxError> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .into())
}

/// The user a server runs as: PostgreSQL refuses to run as root, so when this process is
/// root the cluster belongs to the `postgres` account.
#[derive(Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

fn id(args: &[&str]) -> Result<u32, BoxError> {
    let out = std::process::Command::new("id").args(args).output()?;
    if !out.status.success() {
        return Err(format!("`id {}` failed", args.join(" ")).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn postgres_account() -> Result<Option<Account>, BoxError> {
    if id(&["-u"])? != 0 {
        return Ok(None);
    }
    let uid = id(&["-u", "postgres"])
        .map_err(|_| "running as root, but there is no `postgres` account to run initdb as")?;
    Ok(Some(Account {
        uid,
        gid: id(&["-g", "postgres"])?,
    }))
}

fn postgres_bin_dir() -> Result<PathBuf, BoxError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .ok_or_else(|| "PostgreSQL server binaries (initdb, postgres) not found".into())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
    })
}

/// A PostgreSQL cluster created by `initdb` for this run.
pub(crate) struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    account: Option<Account>,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// Creates the cluster in a new temporary directory and starts it.
    pub(crate) async fn start() -> Result<Self, BoxError> {
        let dir = fresh_dir("pg")?;
        let account = postgres_account()?;
        if let Some(a) = account {
            let status = std::process::Command::new("chown")
                .arg(format!("{}:{}", a.uid, a.gid))
                .arg(&dir)
                .status()?;
            if !status.success() {
                return Err(format!("chown of {} failed", dir.display()).into());
            }
        }
        let mut pg = Self {
            bin: postgres_bin_dir()?,
            dir,
            account,
            port: free_port()?,
            child: None,
        };
        let status = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(pg.data())
            .stdout(Stdio::null())
            .stderr(log_file(&pg.dir.join("initdb.log"))?)
            .status()
            .await?;
        if !status.success() {
            return Err(
                format!("initdb failed; see {}", pg.dir.join("initdb.log").display()).into(),
            );
        }
        pg.spawn().await?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some(a) = self.account {
            cmd.uid(a.uid).gid(a.gid);
        }
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    /// `postgres://` URL of the cluster's `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn spawn(&mut self) -> Result<(), BoxError> {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                // A process crash (not a power cut) is what this harness simulates: the WAL
                // written to the OS survives it, so fsync buys nothing here.
                "-c",
                "fsync=off",
            ])
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("postgres.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "postgres exited with {status}; see {}",
                    self.dir.join("postgres.log").display()
                )
                .into());
            }
            let options = sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(self.port)
                .username("postgres")
                .database("postgres");
            if <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Crashes the server (immediate shutdown: no checkpoint, every connection cut) and starts
    /// it again, which replays the WAL. Returns how long it was unreachable.
    pub(crate) async fn crash_and_restart(&mut self) -> Result<Duration, BoxError> {
        let began = Instant::now();
        self.shutdown("QUIT").await?;
        self.spawn().await?;
        Ok(began.elapsed())
    }

    async fn shutdown(&mut self, how: &str) -> Result<(), BoxError> {
        stop_child(self.child.take(), how).await
    }

    /// Stops the server and removes its directory.
    pub(crate) async fn stop(mut self) -> Result<(), BoxError> {
        self.shutdown("INT").await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A MariaDB server of this run's own: `mariadb-install-db` into a temporary directory, on a
/// free port, with grant tables skipped (every user name is accepted: relays connect as
/// `relay`, so the harness can find and kill their connections).
pub(crate) struct MariaDb {
    dir: PathBuf,
    server: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl MariaDb {
    /// Creates the data directory and starts the server.
    pub(crate) async fn start() -> Result<Self, BoxError> {
        let dir = fresh_dir("mariadb")?;
        let install = which("mariadb-install-db")
            .or_else(|| which("mysql_install_db"))
            .ok_or("mariadb-install-db not found on PATH or in /usr/sbin")?;
        let server = which("mariadbd")
            .or_else(|| which("mysqld"))
            .ok_or("mariadbd not found on PATH or in /usr/sbin")?;
        let status = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&dir.join("install.log"))?)
            .status()
            .await?;
        if !status.success() {
            return Err(format!(
                "mariadb-install-db failed; see {}",
                dir.join("install.log").display()
            )
            .into());
        }
        let mut db = Self {
            dir,
            server,
            port: free_port()?,
            child: None,
        };
        db.spawn().await?;
        Ok(db)
    }

    /// `mysql://` URL of the server's `chaos` database.
    pub(crate) fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/chaos", self.port)
    }

    async fn spawn(&mut self) -> Result<(), BoxError> {
        let child = Command::new(&self.server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--max-connections=300",
                // A process crash (not a power cut) is what this harness simulates: the log
                // written to the OS survives it.
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=256M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let root = format!("mysql://root@127.0.0.1:{}/mysql", self.port);
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "mariadbd exited with {status}; see {}",
                    self.dir.join("error.log").display()
                )
                .into());
            }
            if let Ok(mut conn) = <sqlx::MySqlConnection as sqlx::Connection>::connect(&root).await
            {
                sqlx::Executor::execute(&mut conn, "CREATE DATABASE IF NOT EXISTS chaos").await?;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("mariadbd did not accept connections within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server (SIGKILL: every connection cut, InnoDB recovers from its log) and
    /// starts it again. Returns how long it was unreachable.
    pub(crate) async fn crash_and_restart(&mut self) -> Result<Duration, BoxError> {
        let began = Instant::now();
        stop_child(self.child.take(), "KILL").await?;
        self.spawn().await?;
        Ok(began.elapsed())
    }

    /// Stops the server and removes its directory.
    pub(crate) async fn stop(mut self) -> Result<(), BoxError> {
        stop_child(self.child.take(), "TERM").await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A `nats-server -js` of this run's own, with a file store that outlives its restarts.
pub(crate) struct Nats {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    /// Starts a server on a free port with its store in a new temporary directory.
    pub(crate) async fn start() -> Result<Self, BoxError> {
        let dir = fresh_dir("nats")?;
        let mut nats = Self {
            bin: which("nats-server").ok_or("nats-server not found on PATH or in /usr/sbin")?,
            dir,
            port: free_port()?,
            child: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// The client URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store.
    pub(crate) async fn resume(&mut self) -> Result<(), BoxError> {
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.join("nats.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("nats-server did not listen within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops the server (SIGTERM, the way an operator or orchestrator stops it).
    pub(crate) async fn pause(&mut self) -> Result<(), BoxError> {
        stop_child(self.child.take(), "TERM").await
    }

    /// Stops the server and removes its store.
    pub(crate) async fn stop(mut self) -> Result<(), BoxError> {
        self.pause().await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}
