//! A throwaway PostgreSQL cluster under `target/pg/` for the store's tests,
//! benches and demonstration.
//!
//! [`Cluster::start`] installs PostgreSQL when missing (Debian's
//! `postgresql` package), makes a fresh cluster in `target/pg/data` with
//! trust authentication for the `postgres` role, starts it listening on
//! 127.0.0.1 only, on a free port, with no Unix socket, and creates the
//! database [`DATABASE`]. Dropping the [`Cluster`] stops the server.
//!
//! `initdb` and `pg_ctl` refuse to run as root: when this process is root
//! they run as the `postgres` user (which the Debian package creates)
//! through `runuser`, and `target/pg/` belongs to that user.
//!
//! A watchdog (a shell loop in its own process group, so a Ctrl-C at the
//! terminal does not reach it) stops the server when this process ends
//! without dropping the cluster: interrupted or killed. A run that finds
//! a cluster left over from an earlier run stops it and starts afresh.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::{Service, ensure, is_root};

/// The database the tests use, created empty in every fresh cluster.
pub const DATABASE: &str = "dlms_sec_test";

/// The superuser role of the cluster (`initdb -U`); no password.
const ROLE: &str = "postgres";

/// The user that owns the cluster when this process is root.
const OWNER_WHEN_ROOT: &str = "postgres";

/// Where the Debian packages put each major version's server programs.
const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// The server programs, from Debian's package when missing. The check
/// mirrors [`bin_dir`]: a version under [`DEBIAN_LIB`], or `initdb` and
/// `pg_ctl` on the PATH.
pub(crate) const POSTGRESQL: Service = Service {
    name: "PostgreSQL",
    check: &[
        "sh",
        "-c",
        "for d in /usr/lib/postgresql/*/bin; do \
         [ -x \"$d/initdb\" ] && [ -x \"$d/pg_ctl\" ] && exit 0; \
         done; \
         command -v initdb >/dev/null && command -v pg_ctl >/dev/null",
    ],
    install: &[
        &["apt-get", "update", "-qq"],
        &["apt-get", "install", "-y", "-qq", "postgresql"],
    ],
};

/// Settings appended to the cluster's `postgresql.conf`: loopback TCP only,
/// and no durability (a crash loses a throwaway cluster anyway).
const SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
";

/// A running throwaway cluster; dropping it stops the server.
pub struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    owner: Option<&'static str>,
    url: String,
    watchdog: Option<Child>,
    running: bool,
}

impl Cluster {
    /// Installs PostgreSQL when missing, then makes and starts a fresh
    /// cluster in `dir/data` (`dir` is `target/pg` of the workspace).
    pub fn start(dir: &Path) -> Result<Cluster, String> {
        ensure(&POSTGRESQL)?;
        let bin = bin_dir().ok_or("PostgreSQL's initdb and pg_ctl are not to be found")?;
        let owner = if is_root() {
            if !succeeds(
                Command::new("id")
                    .args(["-u", OWNER_WHEN_ROOT])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            ) {
                return Err(format!(
                    "initdb does not run as root, and there is no `{OWNER_WHEN_ROOT}` user to run it"
                ));
            }
            Some(OWNER_WHEN_ROOT)
        } else {
            None
        };
        let data = dir.join("data");
        let pg_ctl = bin.join("pg_ctl");
        clear_leftovers(dir, &data, &pg_ctl, owner)?;

        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        if let Some(user) = owner {
            run(
                Command::new("chown").args([OsStr::new("-R"), user.as_ref(), dir.as_os_str()]),
                "chown",
            )?;
        }

        let mut initdb = as_user(
            owner,
            &bin.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                ROLE.as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        run(&mut initdb, "initdb").map_err(|e| match owner {
            Some(user) => format!(
                "{e}(initdb runs as `{user}`, who must reach {})",
                dir.display()
            ),
            None => e,
        })?;

        let port = free_port()?;
        fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut conf| write!(conf, "\n# cargo xtask\n{SETTINGS}port = {port}\n"))
            .map_err(|e| format!("cannot write the cluster's postgresql.conf: {e}"))?;

        let mut cluster = Cluster {
            watchdog: watchdog(&stop_command(&pg_ctl, &data, owner, "fast")),
            pg_ctl,
            data,
            owner,
            url: url(port),
            running: false,
        };
        let log = dir.join("server.log");
        let mut start = as_user(
            owner,
            &cluster.pg_ctl,
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-s".as_ref(),
                "-D".as_ref(),
                cluster.data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
            ],
        );
        if let Err(e) = run(&mut start, "pg_ctl start") {
            // A start that timed out may have left a server behind.
            let _ = stop_command(&cluster.pg_ctl, &cluster.data, owner, "immediate")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return Err(format!("{e}the server's log is {}", log.display()));
        }
        cluster.running = true;

        let port = port.to_string();
        run(
            Command::new(bin.join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                ROLE,
                DATABASE,
            ]),
            "createdb",
        )?;
        Ok(cluster)
    }

    /// The URL of the test database, for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let mut stop = stop_command(&self.pg_ctl, &self.data, self.owner, "fast");
            if let Err(e) = run(&mut stop, "pg_ctl stop") {
                eprintln!("xtask: {e}");
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The file in `target/pg/` that holds the id of the process that made the
/// cluster, so that a second run does not tear down a cluster in use.
const OWNER_FILE: &str = "xtask.pid";

/// Removes the cluster an earlier run left, stopping its server first;
/// refuses while the process that made it is still alive.
fn clear_leftovers(
    dir: &Path,
    data: &Path,
    pg_ctl: &Path,
    owner: Option<&str>,
) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(pid) = fs::read_to_string(dir.join(OWNER_FILE)) {
        let pid = pid.trim();
        if !pid.is_empty() && alive(pid) {
            return Err(format!(
                "{} is in use by xtask process {pid}",
                dir.display()
            ));
        }
    }
    if data.join("postmaster.pid").exists() {
        eprintln!("xtask: stopping the PostgreSQL server an earlier run left running");
        let _ = stop_command(pg_ctl, data, owner, "immediate")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

/// Whether process `pid` exists (and this user may signal it).
fn alive(pid: &str) -> bool {
    succeeds(
        Command::new("sh")
            .args(["-c", "kill -0 \"$1\" 2>/dev/null", "sh", pid])
            .stderr(Stdio::null()),
    )
}

/// The directory that holds `initdb`, `pg_ctl` and `createdb`: the newest
/// version under [`DEBIAN_LIB`], else the first PATH entry with `initdb`
/// and `pg_ctl`.
fn bin_dir() -> Option<PathBuf> {
    let has_programs = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let versions = fs::read_dir(DEBIAN_LIB)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|version| has_programs(&Path::new(DEBIAN_LIB).join(version).join("bin")));
    if let Some(version) = newest(versions) {
        return Some(Path::new(DEBIAN_LIB).join(version).join("bin"));
    }
    env::split_paths(&env::var_os("PATH")?).find(|dir| has_programs(dir))
}

/// The newest of Debian's version directory names (`9.6`, `15`, `17`),
/// compared number by number; names that are not versions are skipped.
fn newest(names: impl Iterator<Item = String>) -> Option<String> {
    names
        .filter_map(|name| {
            let key = name
                .split('.')
                .map(str::parse::<u32>)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some((key, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free TCP port on 127.0.0.1: {e}"))
}

/// The URL of [`DATABASE`] on a cluster listening on `port`.
fn url(port: u16) -> String {
    format!("postgres://{ROLE}@127.0.0.1:{port}/{DATABASE}")
}

/// `program args...`, run as `owner` through `runuser` when one is given.
fn as_user(owner: Option<&str>, program: &Path, args: &[&OsStr]) -> Command {
    let mut c = match owner {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    c.args(args);
    c
}

/// `pg_ctl stop -m mode` for the cluster in `data`.
fn stop_command(pg_ctl: &Path, data: &Path, owner: Option<&str>, mode: &str) -> Command {
    as_user(
        owner,
        pg_ctl,
        &[
            "stop".as_ref(),
            "-s".as_ref(),
            "-m".as_ref(),
            mode.as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
        ],
    )
}

/// Starts a shell that waits for this process to end, then runs `stop`.
/// It runs in a process group of its own, so the terminal's Ctrl-C, which
/// ends this process, leaves it to do its work. `None` when it cannot start:
/// the cluster then stops only when this process ends normally.
fn watchdog(stop: &Command) -> Option<Child> {
    Command::new("sh")
        .args([
            "-c",
            "pid=$1; shift; \
             while kill -0 \"$pid\" 2>/dev/null; do sleep 1; done; \
             exec \"$@\" >/dev/null 2>&1",
            "xtask-pg-watchdog",
        ])
        .arg(std::process::id().to_string())
        .arg(stop.get_program())
        .args(stop.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

fn succeeds(c: &mut Command) -> bool {
    c.status().is_ok_and(|status| status.success())
}

/// Runs `c` with its output captured, and shows the output when it fails.
fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let Output {
        status,
        stdout,
        stderr,
    } = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({status}):\n{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: &Command) -> Vec<&OsStr> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .collect()
    }

    #[test]
    fn the_url_names_the_loopback_port_role_and_database() {
        assert_eq!(
            url(54321),
            "postgres://postgres@127.0.0.1:54321/dlms_sec_test"
        );
    }

    #[test]
    fn the_newest_version_is_compared_number_by_number() {
        let names = ["9.6", "15", "13", "common", "16.2"].map(String::from);
        assert_eq!(newest(names.into_iter()).as_deref(), Some("16.2"));
        let names = ["9.6", "10"].map(String::from);
        assert_eq!(newest(names.into_iter()).as_deref(), Some("10"));
        assert_eq!(newest(["common".to_owned()].into_iter()), None);
    }

    #[test]
    fn cluster_programs_run_as_the_owner_through_runuser_when_root() {
        let pg_ctl = Path::new("/usr/lib/postgresql/15/bin/pg_ctl");
        let c = as_user(Some("postgres"), pg_ctl, &["status".as_ref()]);
        assert_eq!(
            argv(&c),
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "status"
            ]
        );
        let c = as_user(None, pg_ctl, &["status".as_ref()]);
        assert_eq!(argv(&c), ["/usr/lib/postgresql/15/bin/pg_ctl", "status"]);
    }

    #[test]
    fn the_stop_command_names_the_mode_and_the_data_directory() {
        let stop = stop_command(
            Path::new("/pg/bin/pg_ctl"),
            Path::new("/w/target/pg/data"),
            None,
            "fast",
        );
        assert_eq!(
            argv(&stop),
            [
                "/pg/bin/pg_ctl",
                "stop",
                "-s",
                "-m",
                "fast",
                "-D",
                "/w/target/pg/data"
            ]
        );
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn this_process_is_alive_and_a_nonexistent_one_is_not() {
        assert!(alive(&std::process::id().to_string()));
        assert!(!alive("2147483646"));
    }
}
