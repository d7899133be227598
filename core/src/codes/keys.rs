//! The two server keys that protect codes at rest.
//!
//! * `mac`: HMAC-SHA256 over (verification id, code). A check recomputes it and
//!   compares in constant time; the stored MAC alone does not give the code back.
//! * `seal`: AES-256-GCM with a random 96-bit nonce and the verification id as
//!   associated data, so a delivery worker in any process can send the *same* code
//!   again on resend, and a sealed code copied onto another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngExt;
use sha2::Sha256;
use uuid::Uuid;
use verifyd_providers::domain::Code;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0} must be exactly 32 bytes")]
    Length(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sealed code does not open with this key and verification id")]
pub struct OpenError;

pub struct CodeKeys {
    mac_key: Vec<u8>,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for CodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKeys(<redacted>)")
    }
}

impl Drop for CodeKeys {
    fn drop(&mut self) {
        self.mac_key.iter_mut().for_each(|b| *b = 0);
    }
}

impl CodeKeys {
    pub fn new(mac_key: &[u8], encryption_key: &[u8]) -> Result<Self, KeyError> {
        if mac_key.len() != 32 {
            return Err(KeyError::Length("code_hmac_key"));
        }
        let cipher = Aes256Gcm::new_from_slice(encryption_key).map_err(|_| KeyError::Length("encryption_key"))?;
        Ok(CodeKeys { mac_key: mac_key.to_vec(), cipher })
    }

    /// HMAC-SHA256 over (context id, secret): the id binds a MAC to its
    /// verification or code set, so equal codes elsewhere give other MACs.
    fn hmac(&self, context: Uuid, secret: &[u8]) -> Hmac<Sha256> {
        // new_from_slice accepts any key length for HMAC; 32 bytes checked in `new`.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(context.as_bytes());
        mac.update(secret);
        mac
    }

    pub fn mac(&self, verification_id: Uuid, code: &Code) -> Vec<u8> {
        self.mac_bytes(verification_id, code.expose().as_bytes())
    }

    /// The MAC of any secret value, bound to the id of the set it belongs to.
    pub fn mac_bytes(&self, context: Uuid, secret: &[u8]) -> Vec<u8> {
        self.hmac(context, secret).finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of a typed code with the stored MAC.
    pub fn matches(&self, verification_id: Uuid, code: &Code, stored_mac: &[u8]) -> bool {
        self.hmac(verification_id, code.expose().as_bytes()).verify_slice(stored_mac).is_ok()
    }

    /// Constant-time check of a MAC made by `mac_bytes`.
    pub fn verify_mac_bytes(&self, context: Uuid, secret: &[u8], stored_mac: &[u8]) -> bool {
        self.hmac(context, secret).verify_slice(stored_mac).is_ok()
    }

    pub fn seal(&self, verification_id: Uuid, code: &Code) -> Vec<u8> {
        self.seal_bytes(verification_id, code.expose().as_bytes())
    }

    /// Seals any secret that must be shown or used again (a TOTP secret), bound
    /// to the id of the row that holds it.
    pub fn seal_bytes(&self, owner: Uuid, secret: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
        let nonce = Nonce::from(nonce_bytes);
        let payload = Payload { msg: secret, aad: owner.as_bytes() };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of a few bytes cannot fail"));
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, verification_id: Uuid, sealed: &[u8]) -> Result<Code, OpenError> {
        let plain = self.open_bytes(verification_id, sealed)?;
        let text = String::from_utf8(plain).map_err(|_| OpenError)?;
        Code::parse(&text).map_err(|_| OpenError)
    }

    pub fn open_bytes(&self, owner: Uuid, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() <= NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce_bytes).map_err(|_| OpenError)?;
        self.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: owner.as_bytes() }).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifyd_providers::domain::CodeLength;

    fn keys() -> CodeKeys {
        CodeKeys::new(&[7u8; 32], &[9u8; 32]).unwrap()
    }

    #[test]
    fn mac_matches_only_the_same_code_and_verification() {
        let k = keys();
        let id = Uuid::new_v4();
        let code = Code::generate(CodeLength::default());
        let mac = k.mac(id, &code);
        assert!(k.matches(id, &code, &mac));
        assert!(!k.matches(Uuid::new_v4(), &code, &mac));
        let other = Code::parse(if code.expose() == "1234567" { "7654321" } else { "1234567" }).unwrap();
        assert!(!k.matches(id, &other, &mac));
        assert!(!k.matches(id, &code, &mac[..31]));
    }

    #[test]
    fn sealed_code_opens_only_for_its_verification() {
        let k = keys();
        let id = Uuid::new_v4();
        let code = Code::parse("0012345").unwrap();
        let sealed = k.seal(id, &code);
        assert!(!sealed.windows(7).any(|w| w == b"0012345"));
        assert_eq!(k.open(id, &sealed).unwrap().expose(), "0012345");
        assert_eq!(k.open(Uuid::new_v4(), &sealed).unwrap_err(), OpenError);
        let other_key = CodeKeys::new(&[7u8; 32], &[1u8; 32]).unwrap();
        assert!(other_key.open(id, &sealed).is_err());
        assert!(k.open(id, &sealed[..10]).is_err());
        // Two seals of the same code differ (fresh nonce).
        assert_ne!(k.seal(id, &code), sealed);
    }

    #[test]
    fn refuses_short_keys() {
        assert_eq!(CodeKeys::new(&[0; 16], &[0; 32]).unwrap_err(), KeyError::Length("code_hmac_key"));
        assert_eq!(CodeKeys::new(&[0; 32], &[0; 31]).unwrap_err(), KeyError::Length("encryption_key"));
    }
}
