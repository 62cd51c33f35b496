//! The set of master keys a process holds, and the one new recordings use.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::key_file::{self, SecretText};
use super::{DataKey, KeyError, KeyId, MasterKey, WrappedKey};

/// The environment variable systemd sets to the service's credentials directory.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The master keys of an installation, oldest first; the last one is current.
///
/// New recordings are wrapped with the current key; older keys stay so that
/// recordings wrapped with them still open.
pub struct Keyring {
    /// Never empty; ids strictly increase.
    keys: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids())
            .field("current", &self.current().id())
            .finish()
    }
}

impl Keyring {
    /// Creates a key file at `path` holding one fresh key, id 1.
    ///
    /// Refuses to touch an existing file ([`KeyError::Exists`]): it may hold the
    /// only copy of keys that recordings depend on.
    pub fn init(path: &Path) -> Result<Keyring, KeyError> {
        let keyring = Self::generate()?;
        key_file::create_new(path, &keyring.serialise())?;
        tracing::info!(
            path = %path.display(),
            key_id = %keyring.current().id(),
            "created key file"
        );
        Ok(keyring)
    }

    /// Loads the key file at `path`.
    ///
    /// A file that users other than its owner may access is refused
    /// ([`KeyError::Permissions`]), as is one that does not parse
    /// ([`KeyError::Malformed`]).
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text = key_file::read_private(path)?;
        Self::parse(&text, path)
    }

    /// Loads the systemd credential `name` (`LoadCredential=name:/path`).
    ///
    /// The file format is the key file's. Its mode is not checked: systemd
    /// places credentials where only the service's user can reach them, and the
    /// mode bits it uses vary between versions.
    pub fn from_credential(name: &str) -> Result<Keyring, KeyError> {
        let directory =
            std::env::var_os(CREDENTIALS_DIRECTORY).ok_or(KeyError::NoCredentialsDirectory)?;
        Self::from_credential_in(Path::new(&directory), name)
    }

    /// Loads credential `name` from `directory`, as [`Keyring::from_credential`]
    /// does from `$CREDENTIALS_DIRECTORY`.
    pub fn from_credential_in(directory: &Path, name: &str) -> Result<Keyring, KeyError> {
        let path = credential_path(directory, name)?;
        let text = key_file::read_unchecked(&path)?;
        Self::parse(&text, &path)
    }

    /// A keyring with one fresh key (id 1), held only in memory.
    pub fn generate() -> Result<Keyring, KeyError> {
        let key = MasterKey::generate(KeyId(1))?;
        Ok(Keyring { keys: vec![key] })
    }

    /// Adds a fresh key that becomes current, and rewrites the key file.
    ///
    /// The file at `path` must still hold exactly this keyring's keys
    /// ([`KeyError::Changed`] otherwise), so that a key another process added
    /// is never lost. The file is replaced atomically; on any error both the
    /// file and this keyring are left as they were.
    pub fn rotate(&mut self, path: &Path) -> Result<KeyId, KeyError> {
        if !self.same_keys(&Self::load(path)?) {
            return Err(KeyError::Changed {
                path: path.to_path_buf(),
            });
        }
        let last = self.current().id();
        let next = last.0.checked_add(1).ok_or(KeyError::IdsExhausted(last))?;
        let key = MasterKey::generate(KeyId(next))?;

        let text = key_file::serialise(self.keys.iter().chain([&key]));
        key_file::replace(path, &text)?;
        self.keys.push(key);
        tracing::info!(path = %path.display(), key_id = %KeyId(next), "rotated master key");
        Ok(KeyId(next))
    }

    /// The key new recordings are wrapped with.
    pub fn current(&self) -> &MasterKey {
        self.keys
            .last()
            .expect("a keyring always holds at least one key")
    }

    /// The key with id `id`, if this keyring holds it.
    pub fn get(&self, id: KeyId) -> Option<&MasterKey> {
        let index = self.keys.binary_search_by_key(&id, MasterKey::id).ok()?;
        self.keys.get(index)
    }

    /// Every key id held, oldest first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(MasterKey::id).collect()
    }

    /// Opens a wrapped data key with whichever master key sealed it.
    ///
    /// [`KeyError::Shredded`] for a destroyed key, [`KeyError::UnknownKey`] when
    /// its master key is not held, [`KeyError::WrongKey`] when it does not open.
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, KeyError> {
        if wrapped.is_shredded() {
            return Err(KeyError::Shredded);
        }
        let master = self
            .get(wrapped.key_id)
            .ok_or(KeyError::UnknownKey(wrapped.key_id))?;
        master.unwrap(wrapped, context)
    }

    /// Wraps a recording's data key anew with the current key.
    ///
    /// The contexts differ when the header bound as context names the key id.
    pub fn rewrap(
        &self,
        wrapped: &WrappedKey,
        old_context: &[u8],
        new_context: &[u8],
    ) -> Result<WrappedKey, KeyError> {
        let data = self.unwrap(wrapped, old_context)?;
        self.current().wrap(&data, new_context)
    }

    fn parse(text: &SecretText, path: &Path) -> Result<Keyring, KeyError> {
        let keys = key_file::parse(&text.0, path)?;
        tracing::debug!(
            path = %path.display(),
            keys = keys.len(),
            "loaded master keys"
        );
        Ok(Keyring { keys })
    }

    fn serialise(&self) -> SecretText {
        key_file::serialise(&self.keys)
    }

    fn same_keys(&self, other: &Keyring) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.id() == b.id() && a.expose() == b.expose())
    }
}

/// `directory/name`, refusing a name that would leave the directory.
fn credential_path(directory: &Path, name: &str) -> Result<PathBuf, KeyError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(file)), None) if file == OsStr::new(name) => {
            Ok(directory.join(name))
        }
        _ => Err(KeyError::InvalidCredentialName(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_stay_inside_the_directory() {
        let directory = Path::new("/run/credentials/callvault.service");
        assert!(credential_path(directory, "master.key").is_ok());
        for name in ["", "..", ".", "a/b", "/etc/shadow", "key/"] {
            assert!(
                matches!(
                    credential_path(directory, name),
                    Err(KeyError::InvalidCredentialName(_))
                ),
                "{name:?} accepted"
            );
        }
    }

    #[test]
    fn debug_shows_ids_but_no_key_bytes() {
        let keyring = Keyring::generate().unwrap();
        let text = format!("{keyring:?}");
        assert_eq!(text, "Keyring { ids: [KeyId(1)], current: KeyId(1) }");
    }
}
