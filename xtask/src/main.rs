//! Project tasks for the dlms-sec workspace, run as `cargo xtask TASK`
//! (an alias in `.cargo/config.toml`).
//!
//! * `test`: installs the services the tests need when they are missing
//!   ([`SERVICES`]), starts a throwaway PostgreSQL server unless
//!   `DATABASE_URL` is set ([`pg`]), then runs
//!   `cargo test --workspace --all-features` with `DATABASE_URL` naming its
//!   database, stops the server and exits with the tests' status.
//! * `pg -- CMD [ARG...]`: runs any command the same way, with a throwaway
//!   PostgreSQL server and `DATABASE_URL` (benches, the demonstration on
//!   PostgreSQL, `psql`).
//! * `demo`: runs the main demonstration ([`DEMO`]).
//!
//! Plain `std::process::Command` only, so the task runner builds in seconds
//! and needs nothing that the tests themselves would install.

use std::env;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};

mod pg;

/// The cargo arguments of the main demonstration (the README's first command).
const DEMO: &[&str] = &[
    "run",
    "-q",
    "--release",
    "-p",
    "dlms-sec-services",
    "--example",
    "smets1_lifecycle",
];

/// The cargo arguments of the test run.
const TEST: &[&str] = &["test", "--workspace", "--all-features"];

/// Something the tests need from the machine: a check (a command that exits
/// 0 when the service is in place; for a daemon, when it answers), and the
/// commands that install (and, for a daemon, start) it when the check fails.
///
/// The check runs as this process's user. The install commands run in order
/// as root (through `sudo` when this process is not root) with
/// `DEBIAN_FRONTEND=noninteractive`; the check must pass after them.
struct Service {
    name: &'static str,
    check: &'static [&'static str],
    install: &'static [&'static [&'static str]],
}

/// The services the tests need, installed in this order. A new one is one
/// more entry: a check that it answers, and the commands that install and
/// start it. PostgreSQL is not among them: it is needed only when
/// `DATABASE_URL` is not set, and [`pg`] installs and starts it.
const SERVICES: &[Service] = &[
    Service {
        // The PKCS#11 provider's tests (pkcs11/) run against SoftHSM2; they
        // make their own token store under target/ (.cargo/config.toml).
        name: "SoftHSM2",
        check: &["test", "-e", "/usr/lib/softhsm/libsofthsm2.so"],
        install: &[
            &["apt-get", "update", "-qq"],
            &["apt-get", "install", "-y", "-qq", "softhsm2"],
        ],
    },
    Service {
        // The compliance report's page is rendered and screenshotted in
        // headless Chromium (report/tests/report.rs).
        name: "Chromium",
        check: &["chromium", "--version"],
        install: &[
            &["apt-get", "update", "-qq"],
            &["apt-get", "install", "-y", "-qq", "chromium"],
        ],
    },
];

/// The variable that names the store's PostgreSQL database.
const DATABASE_URL: &str = "DATABASE_URL";

const USAGE: &str = "\
usage: cargo xtask TASK

tasks:
  test             install the services the tests need when missing
                   (SoftHSM2, Chromium, PostgreSQL), start a throwaway PostgreSQL
                   server under target/pg/, then run
                   `cargo test --workspace --all-features`
  pg -- CMD [ARG]  run CMD with a throwaway PostgreSQL server, its
                   database in DATABASE_URL, e.g.
                   cargo xtask pg -- sh -c 'psql \"$DATABASE_URL\"'
  demo             run the main demonstration (the smets1_lifecycle example)
  help             print this text

When DATABASE_URL is set, `test` and `pg` use that database as it is
and start no server.";

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.to_str().unwrap_or(""), rest),
        None => ("", &[][..]),
    };
    let result = match (task, rest) {
        ("test", []) => test(),
        ("pg", rest) if !pg_command(rest).is_empty() => with_pg(pg_command(rest)),
        ("demo", []) => cargo(DEMO),
        ("help" | "--help" | "-h", []) => {
            // A closed stdout (`| head`) is not an error of this task.
            let _ = writeln!(io::stdout(), "{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    result.unwrap_or_else(|message| {
        eprintln!("xtask: {message}");
        ExitCode::FAILURE
    })
}

fn test() -> Result<ExitCode, String> {
    for service in SERVICES {
        ensure(service)?;
    }
    with_database(|url| {
        let mut c = cargo_command(TEST);
        if let Some(url) = url {
            c.env(DATABASE_URL, url);
        }
        status(c)
    })
}

/// The command of `pg`: its arguments without a leading `--`.
fn pg_command(args: &[OsString]) -> &[OsString] {
    match args.split_first() {
        Some((dashes, rest)) if dashes == "--" => rest,
        _ => args,
    }
}

/// Runs `argv` in the current directory with a database, and returns its
/// exit status as this process's.
fn with_pg(argv: &[OsString]) -> Result<ExitCode, String> {
    let (program, args) = argv.split_first().ok_or("pg: no command to run")?;
    with_database(|url| {
        let mut c = Command::new(program);
        c.args(args);
        if let Some(url) = url {
            c.env(DATABASE_URL, url);
        }
        status(c)
    })
}

/// Runs `f` with the URL of a throwaway cluster's database, stopping the
/// cluster after it whatever `f` returns; or, when `DATABASE_URL` is set,
/// with `None` and no cluster (the child inherits the variable).
fn with_database(
    f: impl FnOnce(Option<&str>) -> Result<ExitCode, String>,
) -> Result<ExitCode, String> {
    if env::var_os(DATABASE_URL).is_some() {
        eprintln!("xtask: {DATABASE_URL} is set; using it and starting no PostgreSQL server");
        return f(None);
    }
    let cluster = pg::Cluster::start(&workspace_root().join("target").join("pg"))?;
    eprintln!("xtask: PostgreSQL at {DATABASE_URL}={}", cluster.url());
    let result = f(Some(cluster.url()));
    drop(cluster);
    result
}

/// Installs `service` unless its check already passes.
fn ensure(service: &Service) -> Result<(), String> {
    if check(service.check) {
        return Ok(());
    }
    eprintln!("xtask: {} is missing; installing it", service.name);
    let root = is_root();
    for argv in service.install {
        let status = as_root(argv, root)
            .ok_or_else(|| format!("{}: an empty install command", service.name))?
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
        if !status.success() {
            return Err(format!(
                "installing {}: `{}` failed ({status})",
                service.name,
                argv.join(" ")
            ));
        }
    }
    if check(service.check) {
        Ok(())
    } else {
        Err(format!(
            "{} is still missing after its install commands (`{}` fails)",
            service.name,
            service.check.join(" ")
        ))
    }
}

/// Whether the check command runs and exits 0.
fn check(argv: &[&str]) -> bool {
    command(argv).is_some_and(|mut c| c.status().as_ref().is_ok_and(ExitStatus::success))
}

/// `argv` as a command run as root: directly when this process is root,
/// otherwise through `sudo`, with `DEBIAN_FRONTEND=noninteractive` either
/// way (`sudo` takes it as an argument, since it resets the environment).
fn as_root(argv: &[&str], root: bool) -> Option<Command> {
    const NONINTERACTIVE: &str = "DEBIAN_FRONTEND=noninteractive";
    if root {
        let mut c = command(argv)?;
        let (key, value) = NONINTERACTIVE.split_once('=')?;
        c.env(key, value);
        Some(c)
    } else {
        if argv.is_empty() {
            return None;
        }
        let mut c = Command::new("sudo");
        c.arg(NONINTERACTIVE).args(argv);
        Some(c)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

fn command(argv: &[&str]) -> Option<Command> {
    let (program, args) = argv.split_first()?;
    let mut c = Command::new(program);
    c.args(args);
    Some(c)
}

/// Runs cargo (the one that runs this task) with `args` at the workspace
/// root, and returns its exit status as this process's.
fn cargo(args: &[&str]) -> Result<ExitCode, String> {
    status(cargo_command(args))
}

/// Cargo (the one that runs this task) with `args`, at the workspace root.
fn cargo_command(args: &[&str]) -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut c = Command::new(cargo);
    c.args(args).current_dir(workspace_root());
    c
}

/// Runs `c` and returns its exit status as this process's.
fn status(mut c: Command) -> Result<ExitCode, String> {
    let status = c
        .status()
        .map_err(|e| format!("cannot run {}: {e}", c.get_program().display()))?;
    Ok(exit_code(status))
}

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The child's exit status as ours: its code, or 1 when a signal ended it.
fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn args(c: &Command) -> Vec<&OsStr> {
        c.get_args().collect()
    }

    #[test]
    fn install_commands_run_through_sudo_when_not_root() {
        let c = as_root(&["apt-get", "install", "-y", "softhsm2"], false).unwrap();
        assert_eq!(c.get_program(), "sudo");
        assert_eq!(
            args(&c),
            [
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "softhsm2"
            ]
        );
    }

    #[test]
    fn install_commands_run_directly_as_root_with_a_noninteractive_frontend() {
        let c = as_root(&["apt-get", "update"], true).unwrap();
        assert_eq!(c.get_program(), "apt-get");
        assert_eq!(args(&c), ["update"]);
        let envs: Vec<_> = c.get_envs().collect();
        assert_eq!(
            envs,
            [(
                OsStr::new("DEBIAN_FRONTEND"),
                Some(OsStr::new("noninteractive"))
            )]
        );
    }

    #[test]
    fn an_empty_command_is_refused() {
        assert!(as_root(&[], true).is_none());
        assert!(as_root(&[], false).is_none());
        assert!(!check(&[]));
    }

    #[test]
    fn the_pg_command_is_what_follows_an_optional_double_dash() {
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(pg_command(&os(&["--", "psql", "-c"])), os(&["psql", "-c"]));
        assert_eq!(pg_command(&os(&["psql", "--"])), os(&["psql", "--"]));
        assert_eq!(pg_command(&os(&["--"])), os(&[]));
        assert_eq!(pg_command(&os(&[])), os(&[]));
    }

    #[test]
    fn a_check_is_the_exit_status_of_its_command() {
        assert!(check(&["true"]));
        assert!(!check(&["false"]));
        assert!(!check(&["/nonexistent/command"]));
    }

    #[test]
    fn every_service_has_a_check_and_an_install_command() {
        for service in SERVICES.iter().chain([&pg::POSTGRESQL]) {
            assert!(!service.check.is_empty(), "{}", service.name);
            assert!(!service.install.is_empty(), "{}", service.name);
            assert!(service.install.iter().all(|argv| !argv.is_empty()));
        }
    }
}
