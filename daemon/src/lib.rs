//! sigild as a library: configuration, token backends, policy, audit and the signing service,
//! plus the gRPC adapters. `main.rs` only wires these together, so tests and benchmarks can use
//! every part directly.
#![deny(missing_docs)]

pub mod audit;
pub mod backend;
pub mod config;
pub mod dev;
pub mod floors;
pub mod keyring;
pub mod metrics;
pub mod policy;
pub mod rpc;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod startup;
pub mod state_dir;
