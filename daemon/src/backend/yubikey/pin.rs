//! The PIN: verified before each signature, never offered again once refused, and the last try never spent.

use secrecy::ExposeSecret as _;

use super::super::Error;
use super::actor::Actor;
use crate::secret::Pin;
/// The error for a PIN the device refused with `tries` left: locked at none, else `wrong`
/// (which differs between a configured PIN and an operator's).
fn refused(backend: String, tries: u8, wrong: impl FnOnce(String, u8) -> Error) -> Error {
    if tries == 0 {
        Error::PinLocked { backend }
    } else {
        wrong(backend, tries)
    }
}

impl Actor {
    /// The PIN tries left, read without spending one; an error when none or only the last
    /// one is left, which sigild never spends.
    pub(super) fn tries_to_spare(&mut self) -> Result<u8, Error> {
        let backend = self.shared.name.clone();
        let yk = self.device()?;
        match yk.get_pin_retries() {
            Ok(0) => Err(Error::PinLocked { backend }),
            Ok(1) => Err(Error::PinFinalTry { backend }),
            Ok(tries) => Ok(tries),
            Err(e) => Err(self.fail("read PIN retries", e)),
        }
    }

    /// Verifies the PIN, refusing when it was refused before or only one try is left.
    pub(super) fn verify_pin(&mut self) -> Result<(), Error> {
        let name = self.shared.name.clone();
        if self.pin.is_none() {
            return Err(Error::Locked { backend: name });
        }
        if let Some(retries) = self.pin_refused {
            return Err(Error::PinWrong {
                backend: name,
                retries,
            });
        }
        self.device()?;
        if !self.pin_checked {
            self.tries_to_spare()?;
        }
        let Some(pin) = &self.pin else {
            return Err(Error::Locked { backend: name });
        };
        let pin = pin.as_auth_pin().expose_secret().as_bytes();
        let yk = match self.yk.as_mut() {
            Some(yk) => yk,
            None => return Err(self.absent()),
        };
        match yk.verify_pin(pin) {
            Ok(()) => {
                self.pin_checked = true;
                Ok(())
            }
            Err(yubikey::Error::WrongPin { tries }) => {
                self.pin_refused = Some(tries);
                self.pin_checked = false;
                tracing::error!(backend = %name, tries_left = tries, "YubiKey refused the PIN; it will not be offered again");
                Err(refused(name, tries, |backend, retries| Error::PinWrong {
                    backend,
                    retries,
                }))
            }
            Err(e) => Err(self.fail("verify PIN", e)),
        }
    }

    /// `sigil token unlock`: reads the tries left (refusing at one or none), offers the PIN
    /// once, and keeps it only if the device accepts it. A refused PIN is not kept and not
    /// retried; a new unlock with another PIN is the operator's decision.
    pub(super) fn unlock(&mut self, pin: Pin) -> Result<u8, Error> {
        let name = self.shared.name.clone();
        if !(6..=8).contains(&pin.len()) || !pin.as_auth_pin().expose_secret().is_ascii() {
            return Err(Error::BadPinFormat {
                backend: name,
                what: format!(
                    "a PIV PIN is 6 to 8 ASCII characters; this one has {} characters (nothing was sent to the device)",
                    pin.len()
                ),
            });
        }
        let retries = self.tries_to_spare()?;
        let yk = self.device()?;
        match yk.verify_pin(pin.as_auth_pin().expose_secret().as_bytes()) {
            Ok(()) => {
                self.pin = Some(pin);
                self.pin_refused = None;
                self.pin_checked = true;
                tracing::info!(backend = %name, "YubiKey unlocked by an operator");
                Ok(retries)
            }
            Err(yubikey::Error::WrongPin { tries }) => {
                tracing::error!(backend = %name, tries_left = tries, "YubiKey refused the PIN supplied by an operator; not retried");
                Err(refused(name, tries, |backend, retries| {
                    Error::UnlockPinWrong { backend, retries }
                }))
            }
            Err(e) => Err(self.fail("verify PIN", e)),
        }
    }
}
