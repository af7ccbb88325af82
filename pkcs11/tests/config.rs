//! Configuration from the environment and a PIN file, in a child process
//! (the environment of a running test cannot be changed safely).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::process::Command;

use dlms_sec_pkcs11::{HsmDco, Pkcs11Config, Pkcs11Error};

const CHILD: &str = "DLMS_PKCS11_TEST_CHILD";

/// In the child: what the environment says must open the token.
fn child(mode: &str) {
    match mode {
        "complete" => {
            let config = Pkcs11Config::from_env().unwrap();
            let hsm = HsmDco::open(&config).unwrap();
            println!("config {config:?}");
            println!("provider {hsm:?}");
        }
        "no-pin" => assert!(matches!(
            Pkcs11Config::from_env(),
            Err(Pkcs11Error::Config(_))
        )),
        other => panic!("unknown child mode {other}"),
    }
}

fn run_child(mode: &str, envs: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "configuration_from_the_environment",
        "--nocapture",
    ])
    .env(CHILD, mode)
    .env_remove("DLMS_PKCS11_PIN")
    .env_remove("DLMS_PKCS11_PIN_FILE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn configuration_from_the_environment() {
    if let Ok(mode) = std::env::var(CHILD) {
        child(&mode);
        return;
    }
    let pair = support::pair();
    let dir = std::env::temp_dir().join(format!("dlms-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{}\n", support::USER_PIN)).unwrap();
    let module = support::module();
    let envs: [(&str, &std::ffi::OsStr); 6] = [
        ("DLMS_PKCS11_MODULE", module.as_os_str()),
        ("DLMS_PKCS11_TOKEN", support::token_label().as_ref()),
        ("DLMS_PKCS11_PIN_FILE", pin_file.as_os_str()),
        ("DLMS_PKCS11_DCO_KEY_LABEL", pair.dco_label.as_ref()),
        ("DLMS_PKCS11_SHARED_KEY_LABEL", pair.shared_label.as_ref()),
        // The test KEKs are imported in clear (to be held in software too).
        ("DLMS_PKCS11_ACCEPT_IMPORTED_KEKS", "1".as_ref()),
    ];
    let out = run_child("complete", &envs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config Pkcs11Config"), "{stdout}");
    assert!(stdout.contains("Pin(..)"), "{stdout}");
    assert!(
        !stdout.contains(support::USER_PIN),
        "the PIN was printed: {stdout}"
    );
    // Without a PIN, a configuration error naming what is missing.
    let out = run_child("no-pin", &envs[..2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
