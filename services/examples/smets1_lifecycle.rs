//! The main demonstration: a DCO, an S1SP and a simulated SMETS1 meter with
//! five clients, through the key lifecycle of the SMETS1 key management
//! policy. Every step checks what it shows; the program exits non-zero if
//! any step does not behave as stated.
//!
//! Run: `cargo run --release -p dlms-sec-services --example smets1_lifecycle`

mod story;

use std::process::ExitCode;

use dlms_sec::key::{DcoKey, SharedKey};
use dlms_sec::provider::{SoftwareDco, SoftwareS1sp};

fn main() -> ExitCode {
    let mut rng = getrandom::SysRng;
    let (Ok(dco_key), Ok(shared_key)) = (DcoKey::generate(&mut rng), SharedKey::generate(&mut rng))
    else {
        eprintln!("the operating system's RNG failed");
        return ExitCode::FAILURE;
    };
    let result = story::run(
        SoftwareDco::new(&dco_key, &shared_key),
        SoftwareS1sp::new(&shared_key),
        &SoftwareDco::new(&dco_key, &shared_key),
        "software (both KEKs in process memory)",
    );
    story::report(result)
}
