//! AES-GCM and counter mode by the token, under a key object: the core's
//! [`Suite0Cipher`] over PKCS#11.

use std::cmp::Ordering;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use dlms_sec::AuthError;
use dlms_sec::error::{IvCause, KeyError, ModuleFailure, Result};
use dlms_sec::suite0::cipher::{Aad, Iv, Suite0Cipher, TAG_LEN};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{bad_output, module_error};
use crate::token::KeystreamPath;

/// One encryption key object in one session.
pub(crate) struct TokenCipher<'s> {
    pub(crate) session: &'s Session,
    pub(crate) key: ObjectHandle,
    pub(crate) keystream: KeystreamPath,
}

/// The AAD in one buffer, as `CK_GCM_PARAMS` takes it. It holds the AK
/// (SC ‖ AK ‖ …), so it is wiped when dropped.
fn joined(aad: &Aad<'_>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(aad.len()));
    aad.for_each_piece(|p| out.extend_from_slice(p));
    out
}

fn tag_bits() -> cryptoki::types::Ulong {
    // 96-bit tag.
    96u64.into()
}

/// One AES-GCM encryption by the module (`C_EncryptInit` and
/// `C_Encrypt` with `CK_GCM_PARAMS`, 96-bit tag): the seam the IV checks
/// sit on. `iv` is the parameters' IV buffer, which a module that makes
/// its own IV writes into; the output is what the module returned.
pub(crate) trait GcmEncrypt {
    fn gcm_encrypt(
        &self,
        iv: &mut Iv,
        aad: &Aad<'_>,
        input: &[u8],
    ) -> std::result::Result<Vec<u8>, CkError>;
}

impl GcmEncrypt for TokenCipher<'_> {
    fn gcm_encrypt(
        &self,
        iv: &mut Iv,
        aad: &Aad<'_>,
        input: &[u8],
    ) -> std::result::Result<Vec<u8>, CkError> {
        let aad = joined(aad);
        let params = GcmParams::new(iv, &aad, tag_bits())?;
        crate::calls::encrypt(self.session, &Mechanism::AesGcm(params), self.key, input)
    }
}

const fn iv_not_honoured(cause: IvCause) -> dlms_sec::Error {
    dlms_sec::Error::Key(KeyError::Provider(ModuleFailure::IvNotHonoured(cause)))
}

/// Encrypts `input` under GCM with the caller's IV and returns ciphertext
/// ‖ tag, or refuses: a module in FIPS mode may refuse an external IV
/// (`CKR_MECHANISM_PARAM_INVALID`: the parameters are otherwise fixed, a
/// 12-octet IV and a 96-bit tag), write an IV of its own into the
/// parameters, or append one to the output. Each is
/// [`ModuleFailure::IvNotHonoured`] with its cause, and nothing of the
/// output reaches the frame.
fn gcm_checked(m: &impl GcmEncrypt, iv: &Iv, aad: &Aad<'_>, input: &[u8]) -> Result<Vec<u8>> {
    let mut used = *iv;
    let out = match m.gcm_encrypt(&mut used, aad, input) {
        Ok(out) => Zeroizing::new(out),
        Err(CkError::Pkcs11(RvError::MechanismParamInvalid, _)) => {
            return Err(iv_not_honoured(IvCause::Refused));
        }
        Err(e) => return Err(module_error(&e)),
    };
    if used != *iv {
        return Err(iv_not_honoured(IvCause::Replaced));
    }
    let expected = input.len().saturating_add(TAG_LEN);
    match out.len().cmp(&expected) {
        Ordering::Equal => Ok(out.to_vec()),
        Ordering::Greater => Err(iv_not_honoured(IvCause::Appended)),
        Ordering::Less => Err(bad_output()),
    }
}

/// [`Suite0Cipher::seal`] by a module, with the IV checks of
/// [`gcm_checked`].
fn seal_checked(
    m: &impl GcmEncrypt,
    iv: &Iv,
    aad: &Aad<'_>,
    src: Option<&[u8]>,
    data: &mut [u8],
) -> Result<[u8; TAG_LEN]> {
    let input: &[u8] = src.unwrap_or(data);
    let mut out = gcm_checked(m, iv, aad, input)?;
    let (ct, tag) = out.split_at_checked(data.len()).ok_or_else(bad_output)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| bad_output())?;
    data.copy_from_slice(ct);
    out.zeroize();
    Ok(tag)
}

/// [`Suite0Cipher::gmac`] by a module, with the IV checks of
/// [`gcm_checked`].
fn gmac_checked(m: &impl GcmEncrypt, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]> {
    let out = gcm_checked(m, iv, aad, &[])?;
    out.as_slice().try_into().map_err(|_| bad_output())
}

impl Suite0Cipher for TokenCipher<'_> {
    fn seal(
        &self,
        iv: &Iv,
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        seal_checked(self, iv, aad, src, data)
    }

    fn open(&self, iv: &Iv, aad: &Aad<'_>, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        let aad = joined(aad);
        let mut iv = *iv;
        let params = GcmParams::new(&mut iv, &aad, tag_bits()).map_err(|e| module_error(&e))?;
        let mut input = Vec::with_capacity(data.len().saturating_add(TAG_LEN));
        input.extend_from_slice(data);
        input.extend_from_slice(tag);
        // The module verifies the tag before it releases any plaintext;
        // the plaintext reaches `data` only on success.
        match crate::calls::decrypt(self.session, &Mechanism::AesGcm(params), self.key, &input) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                if plain.len() != data.len() {
                    return Err(bad_output());
                }
                data.copy_from_slice(&plain);
                Ok(())
            }
            // A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID by the
            // standard; SoftHSM2 2.6 reports CKR_GENERAL_ERROR.
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError
                | RvError::FunctionFailed,
                _,
            )) => Err(AuthError.into()),
            Err(e) => Err(module_error(&e)),
        }
    }

    fn gmac(&self, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]> {
        gmac_checked(self, iv, aad)
    }

    fn apply_keystream(&self, iv: &Iv, src: Option<&[u8]>, data: &mut [u8]) -> Result<()> {
        let mut first = [0u8; 16];
        let (head, counter) = first.split_at_mut(12);
        head.copy_from_slice(iv);
        counter.copy_from_slice(&2u32.to_be_bytes());
        let input: &[u8] = src.unwrap_or(data);
        let out = match self.keystream {
            KeystreamPath::Ctr => {
                let params = cryptoki_sys::CK_AES_CTR_PARAMS {
                    ulCounterBits: 32,
                    cb: first,
                };
                let mechanism = Mechanism::VendorDefined(VendorDefinedMechanism::new(
                    MechanismType::AES_CTR,
                    Some(&params),
                ));
                crate::calls::encrypt(self.session, &mechanism, self.key, input)
                    .map_err(|e| module_error(&e))?
            }
            KeystreamPath::EcbCounterBlocks => {
                let blocks = input.len().div_ceil(16);
                let mut counters = Vec::with_capacity(blocks.saturating_mul(16));
                for i in 0..blocks {
                    let n = 2u32.wrapping_add(u32::try_from(i).map_err(|_| bad_output())?);
                    counters.extend_from_slice(iv);
                    counters.extend_from_slice(&n.to_be_bytes());
                }
                let mut stream =
                    crate::calls::encrypt(self.session, &Mechanism::AesEcb, self.key, &counters)
                        .map_err(|e| module_error(&e))?;
                let out = input.iter().zip(&stream).map(|(a, b)| a ^ b).collect();
                stream.zeroize();
                out
            }
        };
        let out = Zeroizing::new(out);
        if out.len() != data.len() {
            return Err(bad_output());
        }
        data.copy_from_slice(&out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The IV checks against fake modules: each implements the crate's
    //! [`GcmEncrypt`] seam with the core's software AES-GCM, and honours,
    //! refuses, replaces or appends the IV the way FIPS-mode modules do.
    //! Frames go through the core's `ModuleKeys::protect`, as the
    //! providers' do.

    use cryptoki::context::Function;
    use dlms_sec::counter::SingleUse;
    use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
    use dlms_sec::suite0::Protect;
    use dlms_sec::suite0::cipher::{ModuleKeys, SoftwareCipher};
    use dlms_sec::{InvocationCounter, KeyKind, Protection, Suite0, SystemTitle};

    use super::*;

    /// How a fake module treats the caller's IV.
    #[derive(Clone, Copy, Debug)]
    enum Mode {
        Honour,
        /// `CKR_MECHANISM_PARAM_INVALID` at `C_EncryptInit`.
        Refuse,
        /// Encrypts under its own IV and writes it into the parameters.
        Replace,
        /// Encrypts under its own IV and appends it to the output.
        Append,
        /// Encrypts under its own IV and reports nothing: not detectable
        /// by the returned IV or length.
        Silent,
        /// `CKR_KEY_HANDLE_INVALID`: a failure unrelated to the IV.
        LoseKey,
    }

    /// A module's own IV: a random-looking 96-bit value.
    const MODULE_IV: Iv = [0xA5; 12];

    struct Fake {
        mode: Mode,
        gcm: SoftwareCipher,
    }

    impl GcmEncrypt for Fake {
        fn gcm_encrypt(
            &self,
            iv: &mut Iv,
            aad: &Aad<'_>,
            input: &[u8],
        ) -> std::result::Result<Vec<u8>, CkError> {
            let own = match self.mode {
                Mode::Honour => *iv,
                Mode::Refuse => {
                    return Err(CkError::Pkcs11(
                        RvError::MechanismParamInvalid,
                        Function::EncryptInit,
                    ));
                }
                Mode::LoseKey => {
                    return Err(CkError::Pkcs11(
                        RvError::KeyHandleInvalid,
                        Function::EncryptInit,
                    ));
                }
                Mode::Replace | Mode::Append | Mode::Silent => MODULE_IV,
            };
            let mut out = input.to_vec();
            let tag = self.gcm.seal(&own, aad, None, &mut out).unwrap();
            out.extend_from_slice(&tag);
            match self.mode {
                Mode::Replace => *iv = own,
                Mode::Append => out.extend_from_slice(&own),
                _ => {}
            }
            Ok(out)
        }
    }

    /// Seals and GMACs through the fake with the checks; opens in
    /// software (FIPS modules take a caller's IV for decryption).
    impl Suite0Cipher for Fake {
        fn seal(
            &self,
            iv: &Iv,
            aad: &Aad<'_>,
            src: Option<&[u8]>,
            data: &mut [u8],
        ) -> Result<[u8; TAG_LEN]> {
            seal_checked(self, iv, aad, src, data)
        }
        fn open(&self, iv: &Iv, aad: &Aad<'_>, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
            self.gcm.open(iv, aad, data, tag)
        }
        fn gmac(&self, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]> {
            gmac_checked(self, iv, aad)
        }
        fn apply_keystream(&self, iv: &Iv, src: Option<&[u8]>, data: &mut [u8]) -> Result<()> {
            self.gcm.apply_keystream(iv, src, data)
        }
    }

    const APDU: [u8; 5] = [0xC0, 0x01, 0x81, 0x00, 0x01];

    fn keys() -> (GlobalUnicastEncryptionKey, AuthenticationKey) {
        (
            GlobalUnicastEncryptionKey::from_bytes([0x11; 16]),
            AuthenticationKey::from_bytes([0x22; 16]),
        )
    }

    fn request(protection: Protection) -> Protect<'static> {
        Protect::unicast(protection, SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01"))
    }

    /// Protects `APDU` through a fake module in `mode`; the frame, or the
    /// error.
    fn protect(mode: Mode, protection: Protection) -> Result<Vec<u8>> {
        let (guek, ak) = keys();
        let fake = Fake {
            mode,
            gcm: SoftwareCipher::dangerous_new(&guek),
        };
        let mut out = [0u8; 64];
        let n = ModuleKeys::new(KeyKind::GlobalUnicast, &fake, &ak).protect(
            &request(protection),
            &mut SingleUse::dangerous_new(InvocationCounter::new(7)),
            &APDU,
            &mut out,
        )?;
        Ok(out.get(..n).unwrap().to_vec())
    }

    fn software(protection: Protection) -> Vec<u8> {
        let (guek, ak) = keys();
        let mut out = [0u8; 64];
        let n = Suite0::new(&guek, &ak)
            .protect(
                &request(protection),
                &mut SingleUse::dangerous_new(InvocationCounter::new(7)),
                &APDU,
                &mut out,
            )
            .unwrap();
        out.get(..n).unwrap().to_vec()
    }

    const BOTH: [Protection; 2] = [
        Protection::AuthenticatedEncrypted,
        Protection::Authenticated,
    ];

    #[test]
    fn an_honoured_iv_gives_the_software_frame() {
        for p in BOTH {
            assert_eq!(protect(Mode::Honour, p).unwrap(), software(p), "{p:?}");
        }
    }

    #[test]
    fn a_refused_iv_is_refused_with_its_cause() {
        for p in BOTH {
            assert_eq!(
                protect(Mode::Refuse, p).unwrap_err(),
                iv_not_honoured(IvCause::Refused),
                "{p:?}"
            );
        }
    }

    #[test]
    fn a_replaced_iv_is_refused_with_its_cause() {
        for p in BOTH {
            assert_eq!(
                protect(Mode::Replace, p).unwrap_err(),
                iv_not_honoured(IvCause::Replaced),
                "{p:?}"
            );
        }
    }

    #[test]
    fn an_appended_iv_is_refused_with_its_cause() {
        for p in BOTH {
            assert_eq!(
                protect(Mode::Append, p).unwrap_err(),
                iv_not_honoured(IvCause::Appended),
                "{p:?}"
            );
        }
    }

    #[test]
    fn other_module_errors_keep_their_kind() {
        assert_eq!(
            protect(Mode::LoseKey, Protection::AuthenticatedEncrypted).unwrap_err(),
            dlms_sec::Error::Key(KeyError::Provider(ModuleFailure::ObjectMissing))
        );
    }

    /// The limit of detection by the returned IV and length: a module that
    /// uses its own IV and reports nothing yields a frame that differs from
    /// the software one (the meter's tag check fails), which only a
    /// known-answer test can catch before sending.
    #[test]
    fn a_silently_replaced_iv_changes_the_frame() {
        let p = Protection::AuthenticatedEncrypted;
        assert_ne!(protect(Mode::Silent, p).unwrap(), software(p));
    }
}
