//! The management key: where it comes from, and authenticating with it.

use yubikey::piv::{self, ManagementSlotId, SlotId};
use yubikey::{MgmKey, YubiKey};

use super::super::Error;
use super::actor::Actor;

/// Where the management key (needed to generate keys and write label certificates) comes from.
/// `yubikey` 0.8 speaks 3DES management keys only.
#[derive(Clone)]
pub enum ManagementKey {
    /// The factory default.
    Default,
    /// A key from `management_key_file` (zeroized on drop by the `yubikey` crate).
    Configured(MgmKey),
    /// Read from the device's PIN-protected data object after verifying the PIN.
    PinProtected,
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl ManagementKey {
    fn describe(&self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Configured(_) => "configured",
            Self::PinProtected => "PIN-protected",
        }
    }

    /// Parses a management key file's content: 48 hex digits (3DES), whitespace around it
    /// ignored. Errors never show the key.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() != 48 {
            return Err(format!(
                "a management key is 48 hex digits (3DES); this one has {} characters",
                text.len()
            ));
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 24]);
        hex::decode_to_slice(text, bytes.as_mut_slice())
            .map_err(|_| "the management key is not hex".to_owned())?;
        MgmKey::from_bytes(bytes.as_slice())
            .map(Self::Configured)
            .map_err(|_| "the management key is a weak 3DES key".to_owned())
    }
}

/// Whether the device still takes the factory-default management key: its metadata says so
/// (firmware 5.3+), or, without metadata, authenticating with the default key succeeds.
pub(super) fn uses_default_key(yk: &mut YubiKey) -> Result<bool, yubikey::Error> {
    match piv::metadata(yk, SlotId::Management(ManagementSlotId::Management)) {
        Ok(metadata) if metadata.default.is_some() => return Ok(metadata.default == Some(true)),
        Err(e @ yubikey::Error::PcscError { .. }) => return Err(e),
        _ => {}
    }
    match yk.authenticate(MgmKey::default()) {
        Ok(()) => Ok(true),
        Err(e @ yubikey::Error::PcscError { .. }) => Err(e),
        Err(_) => Ok(false),
    }
}

impl Actor {
    /// Authenticates with the management key, as configured. The PIN-protected key is read
    /// after verifying the PIN (so it needs an unlocked device).
    pub(super) fn authenticate(&mut self) -> Result<(), Error> {
        let key = match &self.mgm {
            ManagementKey::Default => MgmKey::default(),
            ManagementKey::Configured(key) => key.clone(),
            ManagementKey::PinProtected => {
                self.verify_pin()?;
                let yk = self.device()?;
                match MgmKey::get_protected(yk) {
                    Ok(key) => key,
                    Err(e @ yubikey::Error::PcscError { .. }) => {
                        return Err(self.fail("read the PIN-protected management key", e));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no PIN-protected management key");
                        return Err(self.bad(
                            "the device holds no PIN-protected management key (management_key = \"pin-protected\")".into(),
                        ));
                    }
                }
            }
        };
        let which = self.mgm.describe();
        let yk = self.device()?;
        match yk.authenticate(key) {
            Ok(()) => Ok(()),
            Err(e @ yubikey::Error::PcscError { .. }) => {
                Err(self.fail("authenticate with the management key", e))
            }
            Err(e) => {
                tracing::error!(backend = %self.shared.name, error = %e, which, "management key refused");
                Err(Error::MgmKeyRefused {
                    backend: self.shared.name.clone(),
                    which,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_key_files_are_48_hex_digits_and_never_echoed() {
        let good = "3f1c9e2a7b4d6805c1e2d3f4a5b6c7d8e9fa0b1c2d3e4f51";
        let key = ManagementKey::from_hex(&format!("{good}\n")).expect("key");
        assert_eq!(format!("{key:?}"), "configured");
        for bad in ["", "0102", &"zz".repeat(24), &format!("{good}00")] {
            let err = ManagementKey::from_hex(bad).expect_err(bad);
            assert!(!err.contains("3f1c"), "{err}");
        }
        // A weak DES key (all-zero halves) is refused by the crate.
        assert!(ManagementKey::from_hex(&"01".repeat(24)).is_err());
    }
}
