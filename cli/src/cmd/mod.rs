//! One module per command, each holding its clap arguments and its `run()`.

pub(crate) mod audit;
pub(crate) mod collection;
pub(crate) mod delegation;
pub(crate) mod docs;
pub(crate) mod key;
pub(crate) mod sign;
pub(crate) mod token;
pub(crate) mod tuf;
pub(crate) mod verify;
