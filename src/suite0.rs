//! (being written)
/// Placeholder.
#[derive(Debug)]
pub struct Suite0;
