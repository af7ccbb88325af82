//! Invocation counters (temporary minimal version; replaced by the full module).
use crate::error::CounterError;
use crate::wire::{InvocationCounter, KeyKind, SystemTitle};

/// Hands out each invocation counter value once.
pub trait CounterSource {
    /// # Errors
    /// Exhausted.
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError>;
}

/// One-shot.
#[derive(Debug)]
pub struct SingleUse(Option<InvocationCounter>);
impl SingleUse {
    /// New.
    #[must_use]
    pub const fn new(ic: InvocationCounter) -> Self {
        Self(Some(ic))
    }
}
impl CounterSource for SingleUse {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        self.0.take().ok_or(CounterError::Exhausted)
    }
}

/// Proof.
#[derive(Debug)]
pub struct ReplayProof {
    peer: SystemTitle,
    key: KeyKind,
    ic: InvocationCounter,
}
impl ReplayProof {
    pub(crate) fn new(peer: SystemTitle, key: KeyKind, ic: InvocationCounter) -> Self {
        Self { peer, key, ic }
    }
    /// Counter.
    #[must_use]
    pub fn invocation_counter(&self) -> InvocationCounter {
        let _ = (self.peer, self.key);
        self.ic
    }
}
