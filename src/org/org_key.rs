//! The organisation key: seals the secrets the gateway must be able to replay (a send
//! connector's smart-host password) with AES-256-GCM, so that a dump of the shared database does
//! not reveal them.
//!
//! Several nodes share one organisation, so the key is not per node: the administrator gives
//! every node the same one, as `HUBGATE_ORGANIZATION_KEY` or as `<data dir>/organization.key`
//! (0600). The first node to start without one makes it, as long as nothing is sealed yet; a node
//! given another key (or none, once secrets exist) stops at start with an error that says so.
//! Never on the command line, where every local user could read it in the process list.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::PgPool;

pub const KEY_ENV: &str = "HUBGATE_ORGANIZATION_KEY";
pub const KEY_FILE: &str = "organization.key";
const KEY_LEN: usize = 32;
/// A sealed value: `hgv1:` and the base64 of nonce, ciphertext and tag.
const SEALED: &str = "hgv1:";
/// A value stored before secrets were sealed (migration 0003 marks them), until sealed at start.
const PLAIN: &str = "plain:";
const CHECK_PURPOSE: &[u8] = b"hubgate organization key check";
const CHECK_TEXT: &str = "hubgate organization key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{origin} is not an organization key: expected 32 bytes in base64, as in organization.key"
    )]
    Malformed { origin: String },
    #[error("reading the organization key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the organization key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "this node has no organization key, but the organization's secrets are encrypted with one: \
         copy organization.key from another node of the organization to {path} (mode 0600), \
         or set {KEY_ENV} to its contents"
    )]
    Missing { path: PathBuf },
    #[error(
        "the organization key storing a credential needs was not given: run the shell with the \
         gateway's data directory (HUBGATE_DATA_DIR, which holds organization.key) or set {KEY_ENV}"
    )]
    NotGiven,
    #[error(
        "the organization key from {origin} is not the key this organization's secrets are \
         encrypted with: every node of an organization must be given the same key (copy \
         organization.key from a node that works, or set {KEY_ENV} to its contents)"
    )]
    Wrong { origin: String },
    #[error(
        "the {what} cannot be decrypted with the organization key from {origin}: it was altered, \
         or sealed with another key; set the credential again (Set-SendConnector \
         -AuthenticationCredential)"
    )]
    Undecryptable { what: String, origin: String },
    #[error("the {what} is stored in an unknown form; set the credential again")]
    UnknownForm { what: String },
    #[error("the system random number generator failed")]
    Random,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The key, and where it came from (for error messages; never the key itself).
#[derive(Clone)]
pub struct OrganizationKey {
    key: Arc<LessSafeKey>,
    origin: String,
}

impl std::fmt::Debug for OrganizationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrganizationKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

impl OrganizationKey {
    /// Parses the text form (base64 of 32 bytes; surrounding blanks and the newline ignored).
    pub fn from_text(text: &str, origin: &str) -> Result<OrganizationKey, KeyError> {
        let malformed = || KeyError::Malformed {
            origin: origin.to_string(),
        };
        let bytes = STANDARD.decode(text.trim()).map_err(|_| malformed())?;
        if bytes.len() != KEY_LEN {
            return Err(malformed());
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| malformed())?;
        Ok(OrganizationKey {
            key: Arc::new(LessSafeKey::new(key)),
            origin: origin.to_string(),
        })
    }

    /// A new random key and its text form.
    pub fn generate(origin: &str) -> Result<(OrganizationKey, String), KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        let text = STANDARD.encode(bytes);
        Ok((OrganizationKey::from_text(&text, origin)?, text))
    }

    /// The key this node was given: `HUBGATE_ORGANIZATION_KEY`, else `<data dir>/organization.key`
    /// when there is one.
    pub fn load(data_dir: Option<&Path>) -> Result<Option<OrganizationKey>, KeyError> {
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            return OrganizationKey::from_text(&text, KEY_ENV).map(Some);
        }
        let Some(dir) = data_dir else {
            return Ok(None);
        };
        let path = key_path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                warn_if_readable_by_others(&path);
                OrganizationKey::from_text(&text, &path.display().to_string()).map(Some)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Read { path, source }),
        }
    }

    /// Writes a new key to `<data dir>/organization.key`, 0600 whatever the umask. Another
    /// process that made it first wins, and its key is returned.
    fn create_file(data_dir: &Path) -> Result<OrganizationKey, KeyError> {
        let path = key_path(data_dir);
        let write_err = |source| KeyError::Write {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(write_err)?;
        let (key, text) = OrganizationKey::generate(&path.display().to_string())?;
        let tmp = data_dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        let written = f
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        // A hard link appears whole or not at all, and fails if the name exists.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(data_dir) {
                    let _ = d.sync_all();
                }
                tracing::warn!(
                    "made a new organization key in {}: back it up, and give every node of the \
                     organization the same file",
                    path.display()
                );
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                OrganizationKey::load(Some(data_dir))?.ok_or(KeyError::Missing { path })
            }
            Err(e) => Err(write_err(e)),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Seals `plaintext` for `purpose` (which names the row and column, so that a sealed value
    /// copied to another row does not open there).
    pub fn seal(&self, purpose: &[u8], plaintext: &str) -> Result<String, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Random)?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose),
                &mut data,
            )
            .map_err(|_| KeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED}{}", STANDARD.encode(out)))
    }

    /// Opens a stored value; `what` names it in errors.
    pub fn open(&self, purpose: &[u8], stored: &str, what: &str) -> Result<String, KeyError> {
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return Ok(plain.to_string());
        }
        let undecryptable = || KeyError::Undecryptable {
            what: what.to_string(),
            origin: self.origin.clone(),
        };
        let Some(b64) = stored.strip_prefix(SEALED) else {
            return Err(KeyError::UnknownForm {
                what: what.to_string(),
            });
        };
        let raw = STANDARD.decode(b64).map_err(|_| undecryptable())?;
        if raw.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
        let mut data = sealed.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(purpose), &mut data)
            .map_err(|_| undecryptable())?;
        String::from_utf8(opened.to_vec()).map_err(|_| undecryptable())
    }

    /// Compares with the organisation's check value, storing it when there is none yet.
    async fn check_against(&self, pool: &PgPool) -> Result<(), KeyError> {
        let verifier = self.seal(CHECK_PURPOSE, CHECK_TEXT)?;
        sqlx::query(
            "INSERT INTO organization_key_check (id, verifier) VALUES (true, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&verifier)
        .execute(pool)
        .await?;
        let (stored,): (String,) =
            sqlx::query_as("SELECT verifier FROM organization_key_check WHERE id")
                .fetch_one(pool)
                .await?;
        match self.open(CHECK_PURPOSE, &stored, "organization key check") {
            Ok(t) if t == CHECK_TEXT => Ok(()),
            _ => Err(KeyError::Wrong {
                origin: self.origin.clone(),
            }),
        }
    }
}

/// Whether anything is sealed already (then a node without the key must not make a new one).
async fn sealed_secrets_exist(pool: &PgPool) -> Result<bool, KeyError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM organization_key_check)
              + (SELECT count(*) FROM send_connector WHERE auth_password LIKE 'hgv1:%')",
    )
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}

/// What a node does with the key at start (and the shell before it stores a credential):
/// load it, or make it when the organisation has none yet; check that it is the organisation's;
/// seal passwords still stored in plaintext; and check that every sealed one opens, so that a
/// node given the wrong key stops now rather than at its first delivery.
///
/// `data_dir` is where `organization.key` lives; without one only the environment is read.
pub async fn prepare(pool: &PgPool, data_dir: Option<&Path>) -> Result<OrganizationKey, KeyError> {
    let (key, made) = match OrganizationKey::load(data_dir)? {
        Some(k) => (k, false),
        None => {
            let Some(dir) = data_dir else {
                return Err(KeyError::NotGiven);
            };
            if sealed_secrets_exist(pool).await? {
                return Err(KeyError::Missing {
                    path: key_path(dir),
                });
            }
            (OrganizationKey::create_file(dir)?, true)
        }
    };
    if let Err(e) = key.check_against(pool).await {
        // Another node made its key at the same moment and stored its check first: the file
        // just made here has sealed nothing, so it goes, and the error says what to copy.
        if made
            && matches!(e, KeyError::Wrong { .. })
            && let Some(dir) = data_dir
        {
            let _ = std::fs::remove_file(key_path(dir));
            return Err(KeyError::Missing {
                path: key_path(dir),
            });
        }
        return Err(e);
    }
    crate::org::send_connector::seal_stored_passwords(pool, &key).await?;
    crate::org::send_connector::check_stored_passwords(pool, &key).await?;
    Ok(key)
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "{} can be read by other users: chmod 600 it",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_for_their_purpose() {
        let (key, _) = OrganizationKey::generate("test").unwrap();
        let sealed = key.seal(b"row 1", "s3cret").unwrap();
        assert!(sealed.starts_with(SEALED) && !sealed.contains("s3cret"));
        assert_eq!(key.open(b"row 1", &sealed, "x").unwrap(), "s3cret");
        assert!(matches!(
            key.open(b"row 2", &sealed, "x"),
            Err(KeyError::Undecryptable { .. })
        ));
        let (other, _) = OrganizationKey::generate("other").unwrap();
        assert!(other.open(b"row 1", &sealed, "x").is_err());
        // Each sealing has its own nonce.
        assert_ne!(sealed, key.seal(b"row 1", "s3cret").unwrap());
        assert_eq!(key.open(b"row 1", "plain:old", "x").unwrap(), "old");
    }

    #[test]
    fn key_text_is_checked() {
        let (_, text) = OrganizationKey::generate("t").unwrap();
        assert!(OrganizationKey::from_text(&format!(" {text}\n"), "t").is_ok());
        for bad in ["", "not base64!", "AAAA"] {
            let e = OrganizationKey::from_text(bad, "HUBGATE_ORGANIZATION_KEY").unwrap_err();
            assert!(e.to_string().contains("HUBGATE_ORGANIZATION_KEY"), "{e}");
        }
    }

    #[test]
    fn the_key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = OrganizationKey::create_file(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second maker finds the first one's key.
        let b = OrganizationKey::create_file(dir.path()).unwrap();
        let sealed = a.seal(b"p", "x").unwrap();
        assert_eq!(b.open(b"p", &sealed, "x").unwrap(), "x");
    }
}
