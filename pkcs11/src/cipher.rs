//! AES-GCM and counter mode by the token, under a key object: the core's
//! [`Suite0Cipher`] over PKCS#11.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use dlms_sec::AuthError;
use dlms_sec::error::Result;
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

impl Suite0Cipher for TokenCipher<'_> {
    fn seal(
        &self,
        iv: &Iv,
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let aad = joined(aad);
        let mut iv = *iv;
        let params = GcmParams::new(&mut iv, &aad, tag_bits()).map_err(|e| module_error(&e))?;
        let input: &[u8] = src.unwrap_or(data);
        let mut out =
            crate::calls::encrypt(self.session, &Mechanism::AesGcm(params), self.key, input)
                .map_err(|e| module_error(&e))?;
        let (ct, tag) = out.split_at_checked(data.len()).ok_or_else(bad_output)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| bad_output())?;
        data.copy_from_slice(ct);
        out.zeroize();
        Ok(tag)
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
        let aad = joined(aad);
        let mut iv = *iv;
        let params = GcmParams::new(&mut iv, &aad, tag_bits()).map_err(|e| module_error(&e))?;
        let out = crate::calls::encrypt(self.session, &Mechanism::AesGcm(params), self.key, &[])
            .map_err(|e| module_error(&e))?;
        out.as_slice().try_into().map_err(|_| bad_output())
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
