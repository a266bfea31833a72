//! `libsigil_pkcs11.so`: a PKCS#11 2.40 module that fronts sigild. Tools that speak PKCS#11
//! (pkcs11-tool, OpenSSL's pkcs11 engine, PyKCS11 and so python-tuf's HSMSigner) load it and
//! see one slot per sigild backend the calling user can see, holding only the keys sigild's
//! policy lets that user list. Every signature is one sigild Sign call: authorised by the
//! caller's uid, audited, made on the token; the PIN never leaves sigild.
//!
//! Layout: [`client`] talks to sigild, [`objects`] turns keys into PKCS#11 objects,
//! [`mechanism`] maps mechanisms onto sigild's schemes, [`module`] holds the state of one
//! C_Initialize, and `ffi` is the C ABI (the only place with raw pointers).

// A PKCS#11 module is a C ABI: exported symbols, raw pointers in and out. The workspace
// forbids unsafe code; this crate is the one exception, and every unsafe block in `ffi`
// states why it is sound.
#![allow(unsafe_code)]

pub mod client;
mod ffi;
pub mod mechanism;
pub mod module;
pub mod objects;

pub use ffi::C_GetFunctionList;
