//! Model tests of the token cache's state machine: `cargo test` here under
//! `RUSTFLAGS="--cfg loom"` explores every interleaving of the scenarios in
//! `src/token_cache/model.rs` (see that file).
#![cfg(loom)]

#[path = "../../src/token_cache/machine.rs"]
#[allow(dead_code)]
mod machine;

#[cfg(test)]
#[path = "../../src/token_cache/model.rs"]
mod model;

#[cfg(test)]
mod old;
