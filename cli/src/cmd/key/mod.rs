//! `sigil key …`: managing the keys sigild holds. Each subcommand has its own module; this one
//! dispatches and holds the argument parsers they share (role, GUN, algorithm).

use clap::Subcommand;
use clap::builder::PossibleValue;
use sigil_tuf::Algorithm;

use crate::cli::GlobalArgs;
use crate::error::Error;

pub(crate) mod attest;
pub(crate) mod csr;
pub(crate) mod generate;
pub(crate) mod list;
pub(crate) mod public;
pub(crate) mod remove;
pub(crate) mod rotate;

/// Key management through sigild. Each variant's help comes from its `Args` struct's docs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    List(list::ListArgs),
    Generate(generate::GenerateArgs),
    Public(public::PublicArgs),
    Remove(remove::RemoveArgs),
    Rotate(rotate::RotateArgs),
    Attest(attest::AttestArgs),
    Csr(csr::CsrArgs),
}

impl Command {
    /// Runs the chosen subcommand.
    pub(crate) async fn run(&self, global: &GlobalArgs) -> Result<(), Error> {
        match self {
            Self::List(args) => args.run(global).await,
            Self::Generate(args) => args.run(global).await,
            Self::Public(args) => args.run(global).await,
            Self::Remove(args) => args.run(global).await,
            Self::Rotate(args) => args.run(global).await,
            Self::Attest(args) => args.run(global).await,
            Self::Csr(args) => args.run(global).await,
        }
    }
}

/// A `--algorithm` value, spelled as `sigil_tuf` names algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlgorithmArg(pub(crate) Algorithm);

impl clap::ValueEnum for AlgorithmArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self(Algorithm::EcdsaP256),
            Self(Algorithm::Ed25519),
            Self(Algorithm::Rsa3072Pss),
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            Algorithm::EcdsaP256 => "ECDSA on NIST P-256 (every token supports it)",
            Algorithm::Ed25519 => "Ed25519 (signs whole files; needs token support)",
            Algorithm::Rsa3072Pss => "RSA-3072 with PSS (needs token support)",
        };
        Some(PossibleValue::new(self.0.as_str()).help(help))
    }
}

/// Parses a TUF role name, refusing obvious mistakes before they reach sigild.
pub(crate) fn parse_role(role: &str) -> Result<String, String> {
    if role.is_empty() {
        return Err("role must not be empty (e.g. root, targets or targets/releases)".into());
    }
    if role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("role must not contain spaces or control characters".into());
    }
    if role.starts_with('/') || role.ends_with('/') || role.contains("//") {
        return Err(
            "role must not start or end with '/' or contain '//' (e.g. targets/releases)".into(),
        );
    }
    Ok(role.to_owned())
}

/// Whether `role` is one a TUF / Notary collection uses: a top-level role or a delegation.
pub(crate) fn is_tuf_role(role: &str) -> bool {
    matches!(role, "root" | "targets" | "snapshot" | "timestamp") || role.starts_with("targets/")
}

/// Parses a collection name (GUN) such as `example.com/app`.
pub(crate) fn parse_gun(gun: &str) -> Result<String, String> {
    if gun.is_empty() {
        return Err(
            "gun must not be empty; leave --gun out for a key bound to no collection".into(),
        );
    }
    if gun.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("gun must not contain spaces or control characters".into());
    }
    if gun.contains(['*', '?', '[', ']']) {
        return Err(
            "gun must be one collection name such as example.com/app, not a pattern".into(),
        );
    }
    if gun.starts_with('/') || gun.ends_with('/') || gun.contains("//") {
        return Err(
            "gun must not start or end with '/' or contain '//' (e.g. example.com/app)".into(),
        );
    }
    Ok(gun.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_checked_for_obvious_mistakes() {
        for good in ["root", "targets", "targets/releases", "ci-signing"] {
            assert_eq!(parse_role(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            " ",
            "targets ",
            "/targets",
            "targets/",
            "targets//x",
            "a\tb",
        ] {
            assert!(parse_role(bad).is_err(), "{bad:?}");
        }
        assert!(is_tuf_role("targets/releases"));
        assert!(!is_tuf_role("targetsx"));
    }

    #[test]
    fn guns_are_names_not_patterns() {
        for good in [
            "example.com/app",
            "docker.io/library/alpine",
            "localhost:5000/x",
        ] {
            assert_eq!(parse_gun(good).as_deref(), Ok(good));
        }
        for bad in ["", "example.com/*", "a b", "/x", "x/", "a//b", "x?"] {
            assert!(parse_gun(bad).is_err(), "{bad:?}");
        }
    }
}
