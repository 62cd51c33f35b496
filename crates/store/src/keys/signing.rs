//! Ed25519 keys that sign exported bundles, derived from the master keys.
//!
//! A subject access bundle carries an Ed25519 signature over its manifest. The
//! signing key is derived from a master key with HKDF-SHA256 (RFC 5869), so it
//! needs no file of its own and no backup beyond the key file's: whoever holds
//! the master keys can make and recognise the practice's signatures, and nobody
//! else can. `docs/decisions.md` gives the reasons.

use ring::hkdf::{Salt, HKDF_SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use super::{KeyError, KeyId, MasterKey};

/// HKDF salt naming what the derived key is for; a new purpose gets a new salt.
const SALT: &[u8] = b"callvault bundle signing key";

/// HKDF info: the output is an Ed25519 seed (RFC 8032 §5.1.5).
const INFO: &[u8] = b"ed25519 seed v1";

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The signing key derived from one master key.
pub struct SigningKey {
    master: KeyId,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The master key this key was derived from.
    pub fn master_key_id(&self) -> KeyId {
        self.master
    }

    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut public = [0; PUBLIC_KEY_LEN];
        public.copy_from_slice(self.pair.public_key().as_ref());
        public
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

impl MasterKey {
    /// The Ed25519 key this master key stands behind, always the same one.
    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        let mut seed = [0u8; 32];
        Salt::new(HKDF_SHA256, SALT)
            .extract(self.expose())
            .expand(&[INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut seed))
            .map_err(|_| KeyError::Derivation)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Derivation);
        seed.iter_mut().for_each(|b| *b = 0);
        Ok(SigningKey {
            master: self.id(),
            pair: pair?,
        })
    }
}

/// Whether `signature` is `public_key`'s Ed25519 signature of `message`.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_master_key_always_gives_the_same_signing_key() {
        let master = MasterKey::new(KeyId(1), [7; 32]);
        let again = MasterKey::new(KeyId(1), [7; 32]);
        let other = MasterKey::new(KeyId(2), [8; 32]);
        let key = master.signing_key().unwrap();
        assert_eq!(key.public_key(), again.signing_key().unwrap().public_key());
        assert_ne!(key.public_key(), other.signing_key().unwrap().public_key());
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let key = MasterKey::new(KeyId(1), [7; 32]).signing_key().unwrap();
        let other = MasterKey::new(KeyId(2), [8; 32]).signing_key().unwrap();
        let signature = key.sign(b"manifest");
        assert!(verify_signature(&key.public_key(), b"manifest", &signature));
        assert!(!verify_signature(
            &key.public_key(),
            b"manifest!",
            &signature
        ));
        assert!(!verify_signature(
            &other.public_key(),
            b"manifest",
            &signature
        ));
    }
}
