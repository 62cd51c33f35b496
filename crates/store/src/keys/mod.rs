//! Master keys, per-recording data keys, and wrapping one with the other.
//!
//! Every recording is encrypted under its own random data key. The data key is stored
//! in the recording's header wrapped (AES-256-GCM) by a master key, named there by its
//! [`KeyId`]. Rotation adds a master key; old recordings are rewrapped by rewriting
//! only their header. Overwriting a recording's wrapped key destroys the recording
//! (crypto-shredding): without the data key its segments cannot be decrypted.
//!
//! Master keys live in a [`Keyring`], loaded from a key file or a systemd credential;
//! `docs/keys.md` describes the file line by line.

mod key_file;
mod keyring;
pub mod signing;

use std::fmt;
use std::io;
use std::path::PathBuf;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub use keyring::Keyring;

/// Bytes of a master or data key (AES-256).
pub const KEY_LEN: usize = 32;

/// Bytes of a wrapped data key: the sealed key and its GCM tag.
pub const WRAPPED_LEN: usize = KEY_LEN + 16;

/// The id of a master key, written in each recording's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no master key with id {0} is loaded")]
    UnknownKey(KeyId),
    #[error("the data key does not unwrap with master key {0}: wrong key or tampered header")]
    WrongKey(KeyId),
    #[error("the recording's key has been destroyed (crypto-shredded)")]
    Shredded,
    #[error("the system's random number generator failed")]
    Random,
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "key file {} has mode {mode:04o}, which gives users other than its \
         owner access; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {} is malformed at line {line}: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "key file {} already exists; it may hold the only copy of the keys, \
         so it is never overwritten",
        .0.display()
    )]
    Exists(PathBuf),
    #[error(
        "the CREDENTIALS_DIRECTORY environment variable is not set; run callvault \
         from a systemd unit with LoadCredential=, or use a key file"
    )]
    NoCredentialsDirectory,
    #[error("credential name {0:?} is not a plain file name")]
    InvalidCredentialName(String),
    #[error(
        "key file {} changed since it was loaded; load it again and retry",
        path.display()
    )]
    Changed { path: PathBuf },
    #[error("no key id is left after {0}")]
    IdsExhausted(KeyId),
    #[error("deriving a signing key from a master key failed")]
    Derivation,
}

/// Fills `buffer` from the operating system's random number generator.
pub(crate) fn random_bytes(buffer: &mut [u8]) -> Result<(), KeyError> {
    SystemRandom::new()
        .fill(buffer)
        .map_err(|_| KeyError::Random)
}

/// Key material that is overwritten when dropped and never printed.
struct Secret([u8; KEY_LEN]);

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: the compiler may have copied the bytes elsewhere, but the one
        // long-lived copy is cleared.
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

/// A master key and its id.
pub struct MasterKey {
    id: KeyId,
    secret: Secret,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A recording's own key, random for each recording.
pub struct DataKey(Secret);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A data key sealed by a master key, as stored in a recording's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: KeyId,
    pub nonce: [u8; NONCE_LEN],
    pub sealed: [u8; WRAPPED_LEN],
}

impl WrappedKey {
    /// Whether the key was overwritten to destroy the recording.
    pub fn is_shredded(&self) -> bool {
        self.sealed.iter().all(|b| *b == 0)
    }

    /// Overwrites the sealed key, so the recording can never be opened again.
    ///
    /// Only the copy in memory changes: the caller writes it over the header.
    pub fn shred(&mut self) {
        self.sealed = [0; WRAPPED_LEN];
        self.nonce = [0; NONCE_LEN];
    }
}

impl DataKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        random_bytes(&mut bytes)?;
        Ok(Self(Secret(bytes)))
    }

    /// The AES-256-GCM key for sealing and opening a recording's segments.
    pub(crate) fn aead_key(&self) -> LessSafeKey {
        aead_key(&self.0 .0)
    }
}

impl MasterKey {
    pub fn new(id: KeyId, bytes: [u8; KEY_LEN]) -> Self {
        Self {
            id,
            secret: Secret(bytes),
        }
    }

    pub fn generate(id: KeyId) -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        random_bytes(&mut bytes)?;
        Ok(Self::new(id, bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's bytes, for writing the key file.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.secret.0
    }

    /// Seals `key` under this master key. `context` (the recording's header fields)
    /// is bound as associated data, so a wrapped key moved to another file fails.
    pub fn wrap(&self, key: &DataKey, context: &[u8]) -> Result<WrappedKey, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut in_out = key.0 .0.to_vec();
        aead_key(&self.secret.0)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut in_out,
            )
            .map_err(|_| KeyError::Random)?;
        let mut sealed = [0u8; WRAPPED_LEN];
        sealed.copy_from_slice(&in_out);
        Ok(WrappedKey {
            key_id: self.id,
            nonce,
            sealed,
        })
    }

    /// Opens a wrapped data key sealed by this master key with the same `context`.
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        if wrapped.is_shredded() {
            return Err(KeyError::Shredded);
        }
        let mut in_out = wrapped.sealed.to_vec();
        let nonce = Nonce::assume_unique_for_key(wrapped.nonce);
        let plain = aead_key(&self.secret.0)
            .open_in_place(nonce, Aad::from(context), &mut in_out)
            .map_err(|_| KeyError::WrongKey(wrapped.key_id))?;
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(plain);
        in_out.iter_mut().for_each(|b| *b = 0);
        Ok(DataKey(Secret(bytes)))
    }
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte key is valid for AES-256");
    LessSafeKey::new(unbound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_opens_only_with_its_master_key_and_context() {
        let master = MasterKey::generate(KeyId(1)).unwrap();
        let other = MasterKey::generate(KeyId(1)).unwrap();
        let data = DataKey::generate().unwrap();
        let wrapped = master.wrap(&data, b"header").unwrap();
        assert!(master.unwrap(&wrapped, b"header").is_ok());
        assert!(matches!(
            other.unwrap(&wrapped, b"header"),
            Err(KeyError::WrongKey(_))
        ));
        assert!(matches!(
            master.unwrap(&wrapped, b"other"),
            Err(KeyError::WrongKey(_))
        ));
    }

    #[test]
    fn zeroed_wrapped_key_reads_as_shredded() {
        let master = MasterKey::generate(KeyId(7)).unwrap();
        let mut wrapped = master.wrap(&DataKey::generate().unwrap(), b"h").unwrap();
        wrapped.sealed = [0; WRAPPED_LEN];
        assert!(matches!(
            master.unwrap(&wrapped, b"h"),
            Err(KeyError::Shredded)
        ));
    }
}
