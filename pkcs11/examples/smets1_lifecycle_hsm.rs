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

use std::io::Cursor;
use std::process::ExitCode;

use dlms_sec::key::AuditKey;
use dlms_sec_services::MemoryKeyStore;
use dlms_sec_services::counters::MemoryCounters;
use dlms_sec_services::jsonl::JsonLinesSink;
use dlms_sec_services::registry::MemoryRegistry;

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
    // State in memory; the audit log a JSON-lines file in memory.
    let mut rng = getrandom::SysRng;
    let audit_key = AuditKey::generate(&mut rng).unwrap();
    let mut audit = JsonLinesSink::new(Cursor::new(Vec::new()), &audit_key, &mut rng).unwrap();
    let result = story::run(
        hsm,
        s1sp,
        &software,
        "PKCS#11 on SoftHSM2 (DCO Key and Shared Key are token objects)",
        story::State {
            keys: MemoryKeyStore::new(),
            registry: MemoryRegistry::new(),
            counters: MemoryCounters::new(),
        },
        &mut audit,
    );
    let result = result.map(|mut failures| {
        let log = audit.into_inner().into_inner();
        story::check_jsonl(&log, &audit_key, &mut failures);
        failures
    });
    story::report(result)
}
