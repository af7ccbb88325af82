//! The main demonstration's SMETS1 lifecycle story (examples/story) with
//! the DCO's and the S1SP's providers on a throwaway SoftHSM2 token
//! (`DLMS_PKCS11_MODULE` names another SoftHSM2 build). The KEKs are
//! imported with the development helper so the story's factory step (a
//! software packager standing in for the manufacturer's key loading) can
//! package the meter's factory keys under the same KEKs.
//!
//! Run: `cargo run -p dlms-sec-pkcs11 --example smets1_lifecycle_hsm`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a demonstration")]

#[path = "../../services/examples/story/mod.rs"]
mod story;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;

fn main() -> ExitCode {
    let pair = support::pair();
    let caps = pair.hsm.capabilities();
    println!(
        "== PKCS#11 token {:?}: unpack {:?}, package {:?}, keystream {:?}",
        support::token_label(),
        caps.unpack,
        caps.package,
        caps.keystream
    );
    let s1sp = support::s1sp(&pair);
    let support::Pair { hsm, software, .. } = pair;
    let result = story::run(
        hsm,
        s1sp,
        &software,
        "PKCS#11 on SoftHSM2 (DCO Key and Shared Key are token objects)",
    );
    story::report(result)
}
