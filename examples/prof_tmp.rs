//! Profiling probe (not part of the project).
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]
use core::num::NonZeroU32;
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
use dlms_sec::suite0::{Protect, Suite0};
use dlms_sec::wire::CipheredForm;
use dlms_sec::{InvocationCounter, KeyKind, Protection, SystemTitle};
fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap();
    let size: usize = args.next().unwrap().parse().unwrap();
    let n: u32 = args.next().unwrap().parse().unwrap();
    let s = Suite0::new(&GlobalUnicastEncryptionKey::from_bytes([1; 16]), &AuthenticationKey::from_bytes([2; 16]));
    let mut c = SendCounter::new(InvocationCounter::new(1), NonZeroU32::MAX, Volatile).unwrap();
    let p = if mode == "auth" { Protection::Authenticated } else { Protection::AuthenticatedEncrypted };
    let req = Protect { protection: p, key: KeyKind::GlobalUnicast, form: CipheredForm::ServiceSpecific, system_title: SystemTitle::new([3; 8]) };
    let h = s.header_len(&req, size).unwrap();
    let mut buf = vec![0u8; h + size + 12];
    let t = std::time::Instant::now();
    for _ in 0..n {
        buf[h] = 0xC0;
        std::hint::black_box(s.protect_prepared(&req, &mut c, std::hint::black_box(&mut buf), size).unwrap());
    }
    println!("{mode} {size}: {:?}", t.elapsed() / n);
}
