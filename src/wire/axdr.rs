//! A-XDR lengths.
