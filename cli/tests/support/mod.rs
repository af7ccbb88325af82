//! Running the `dlms-sec` binary from the tests.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// What a run of the binary gave.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with `args`.
pub fn dlms_sec(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlms-sec"));
    c.args(args);
    c
}

/// Runs `c` with `stdin` written to its standard input (closed after),
/// and checks it exited on its own and did not panic.
pub fn finish(c: &mut Command, stdin: Option<&str>) -> Out {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    let out = Out {
        code: o.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    };
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{}",
        out.stderr
    );
    out
}
