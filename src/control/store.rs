//! Persistent client credentials: client ID → bcrypt hash of its auth key.
//!
//! Upstream keeps these in a bitcask directory at `store.data_source`; we keep a single `redb`
//! file inside that directory. Only the semantics matter (spec §2.1): put-if-absent on
//! register, delete on unregister, survive restarts, one process per directory.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const CLIENTS: TableDefinition<&str, &str> = TableDefinition::new("clients");
const FILE_NAME: &str = "rtcd.redb";
/// Upstream's bitcask limits: keys ≤ 64 bytes, values ≤ 64 KiB.
pub const MAX_KEY_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("error: empty key")]
    EmptyKey,
    #[error("error: key too large")]
    KeyTooLarge,
    #[error("already registered")]
    AlreadyExists,
    #[error("error: not found")]
    NotFound,
    #[error("store {path}: {msg}")]
    Open { path: PathBuf, msg: String },
    #[error("store I/O error: {0}")]
    Io(String),
}

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Io(e.to_string())
}

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed, mode 0700) the store directory `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |msg: String| StoreError::Open {
            path: dir.to_path_buf(),
            msg,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create directory: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| open_err(format!("cannot set permissions: {e}")))?;
        }
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                open_err("already in use by another process".to_string())
            }
            other => open_err(other.to_string()),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        // Make sure the table exists so readers never see "table does not exist".
        let tx = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        tx.open_table(CLIENTS)
            .map_err(|e| open_err(e.to_string()))?;
        tx.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(Store { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_key(key: &str) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::KeyTooLarge);
        }
        Ok(())
    }

    /// Stores `value` under `key` unless the key exists (atomically).
    pub fn put_if_absent(&self, key: &str, value: &str) -> Result<(), StoreError> {
        Self::check_key(key)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(CLIENTS).map_err(io)?;
            if table.get(key).map_err(io)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            table.insert(key, value).map_err(io)?;
        }
        tx.commit().map_err(io)
    }

    pub fn get(&self, key: &str) -> Result<String, StoreError> {
        Self::check_key(key)?;
        let tx = self.db.begin_read().map_err(io)?;
        let table = tx.open_table(CLIENTS).map_err(io)?;
        let value = table.get(key).map_err(io)?.ok_or(StoreError::NotFound)?;
        Ok(value.value().to_string())
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        Self::check_key(key)?;
        let tx = self.db.begin_write().map_err(io)?;
        {
            let mut table = tx.open_table(CLIENTS).map_err(io)?;
            if table.remove(key).map_err(io)?.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_if_absent_refuses_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_if_absent("a", "1").unwrap();
        assert!(matches!(
            s.put_if_absent("a", "2"),
            Err(StoreError::AlreadyExists)
        ));
        assert_eq!(s.get("a").unwrap(), "1");
    }

    #[test]
    fn entries_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_if_absent("client", "hash").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get("client").unwrap(), "hash");
        s.delete("client").unwrap();
        assert!(matches!(s.get("client"), Err(StoreError::NotFound)));
        assert!(matches!(s.delete("client"), Err(StoreError::NotFound)));
    }

    #[test]
    fn empty_and_oversized_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(matches!(
            s.put_if_absent("", "x"),
            Err(StoreError::EmptyKey)
        ));
        let long = "k".repeat(65);
        assert!(matches!(
            s.put_if_absent(&long, "x"),
            Err(StoreError::KeyTooLarge)
        ));
    }

    #[test]
    fn second_open_of_same_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("already in use"), "{err}");
    }

    #[test]
    fn unopenable_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file.join("sub")).err().unwrap();
        assert!(err.to_string().contains("plain-file"), "{err}");
    }
}
