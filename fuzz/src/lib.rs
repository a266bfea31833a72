//! Fuzz harnesses for every parser that reads untrusted bytes in sigil. Each harness takes
//! arbitrary bytes and panics only when a property is broken (a crash, or a wrong answer such
//! as a canonical form that is not a fixed point or metadata that verifies although its
//! signed part was never signed).
//!
//! The same functions run in two places: `make fuzz` drives them under AFL++ through the
//! `sigil-fuzz-afl` binary (feature `afl`, built by `cargo afl build`), and the `corpus` test
//! replays every committed input (`fuzz/corpus/<target>/`, `fuzz/crashes/<target>/`) as an
//! ordinary test in `cargo test`.
//!
//! A new target is a function here plus a line in
//! [`TARGETS`] and a seeded `fuzz/corpus/<name>/` directory; the driver and the replay test
//! pick it up by name.

pub mod cjson;
pub mod config;
pub mod notary;
pub mod policy;
pub mod request;
pub mod signable;
pub mod tuf1;

/// One fuzz target: a name (its corpus directory and the driver's argument) and its harness.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Directory name under `fuzz/corpus/` and `fuzz/crashes/`.
    pub name: &'static str,
    /// Runs one input; panics when a property is broken.
    pub run: fn(&[u8]),
}

/// Every target, in the order `make fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cjson",
        run: cjson::cjson,
    },
    Target {
        name: "notary",
        run: notary::notary,
    },
    Target {
        name: "tuf1",
        run: tuf1::tuf1,
    },
    Target {
        name: "config",
        run: config::config,
    },
    Target {
        name: "policy",
        run: policy::policy,
    },
    Target {
        name: "request",
        run: request::request,
    },
    Target {
        name: "signable",
        run: signable::signable,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
