//! Secrets (proxy credentials, endpoint tokens, signing keys) live only in the OS keyring under
//! the service `lifeline`; the database keeps just their names. Values are wrapped so they cannot
//! be printed or logged by accident.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::error::{Error, InputError, Result};
use crate::model::SecretName;
use crate::store::Store;

/// Keyring service name under which every Lifeline secret is stored.
pub const KEYRING_SERVICE: &str = "lifeline";

/// A secret value. `Debug` and `Display` never show it; use [`SecretValue::expose`] where the
/// value is really needed (building a header, authenticating to a proxy).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Where secret values are kept. Blocking: call from `spawn_blocking` inside hot async paths.
pub trait SecretStore: Send + Sync + fmt::Debug {
    fn set(&self, name: &SecretName, value: &SecretValue) -> Result<()>;
    fn get(&self, name: &SecretName) -> Result<Option<SecretValue>>;
    /// True if something was deleted.
    fn delete(&self, name: &SecretName) -> Result<bool>;
}

/// The OS keyring: Secret Service on Linux, Keychain on macOS, Credential Manager on Windows.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringSecretStore;

impl KeyringSecretStore {
    fn entry(name: &SecretName) -> Result<keyring::Entry> {
        keyring::Entry::new(KEYRING_SERVICE, name.as_str()).map_err(|e| keyring_error(name, e))
    }
}

fn keyring_error(name: &SecretName, e: keyring::Error) -> Error {
    Error::Keyring {
        name: name.to_string(),
        detail: e.to_string(),
    }
}

impl SecretStore for KeyringSecretStore {
    fn set(&self, name: &SecretName, value: &SecretValue) -> Result<()> {
        Self::entry(name)?
            .set_password(value.expose())
            .map_err(|e| keyring_error(name, e))
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretValue>> {
        match Self::entry(name)?.get_password() {
            Ok(v) => Ok(Some(SecretValue(v))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(name, e)),
        }
    }

    fn delete(&self, name: &SecretName) -> Result<bool> {
        match Self::entry(name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(keyring_error(name, e)),
        }
    }
}

/// In-memory store for tests and for runs that must not touch the OS keyring.
#[derive(Debug, Default)]
pub struct MemorySecretStore {
    values: Mutex<HashMap<SecretName, String>>,
}

impl MemorySecretStore {
    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<SecretName, String>> {
        // A panic while holding this lock cannot leave the map half-updated, so poison is harmless.
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SecretStore for MemorySecretStore {
    fn set(&self, name: &SecretName, value: &SecretValue) -> Result<()> {
        self.values().insert(name.clone(), value.0.clone());
        Ok(())
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretValue>> {
        Ok(self.values().get(name).cloned().map(SecretValue))
    }

    fn delete(&self, name: &SecretName) -> Result<bool> {
        Ok(self.values().remove(name).is_some())
    }
}

/// Reads a secret off the async runtime: keyring access may block on D-Bus.
pub async fn fetch(
    secrets: std::sync::Arc<dyn SecretStore>,
    name: &SecretName,
) -> Result<Option<SecretValue>> {
    let owned = name.clone();
    tokio::task::spawn_blocking(move || secrets.get(&owned))
        .await
        .map_err(|e| Error::Keyring {
            name: name.to_string(),
            detail: e.to_string(),
        })?
}

/// Stores a secret's value in `secrets` and records its name in the database.
pub async fn set_secret(
    store: &Store,
    secrets: &dyn SecretStore,
    name: &SecretName,
    value: SecretValue,
) -> Result<()> {
    if value.expose().is_empty() {
        return Err(InputError::EmptySecret.into());
    }
    secrets.set(name, &value)?;
    store.add_secret_name(name).await?;
    tracing::info!(secret = %name, "secret stored in keyring");
    Ok(())
}

/// Deletes a secret unless an account still uses it. Unknown names are an input error.
pub async fn delete_secret(
    store: &Store,
    secrets: &dyn SecretStore,
    name: &SecretName,
) -> Result<()> {
    let users = store.accounts_using_secret(name).await?;
    if !users.is_empty() {
        return Err(InputError::SecretInUse {
            name: name.to_string(),
            accounts: users.join(", "),
        }
        .into());
    }
    let in_keyring = secrets.delete(name)?;
    let in_db = store.remove_secret_name(name).await?;
    if !in_keyring && !in_db {
        return Err(InputError::UnknownSecret(name.to_string()).into());
    }
    tracing::info!(secret = %name, "secret deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountKind, HeaderRef, NewAccount};
    use crate::store::tests::temp_store;

    #[test]
    fn values_never_show_in_debug() {
        let v = SecretValue::new("hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn secret_value_never_reaches_the_database_file() {
        let (tmp, store) = temp_store().await;
        let mem = MemorySecretStore::default();
        let name = SecretName::parse("proxy-id-1").expect("name");
        let value = "s3cr3t-VALUE-7f1c9a-unmistakable";
        set_secret(&store, &mem, &name, SecretValue::new(value))
            .await
            .expect("set");
        assert_eq!(
            mem.get(&name).expect("get").map(|v| v.expose().to_owned()),
            Some(value.to_owned())
        );
        assert_eq!(store.secret_names().await.expect("names"), vec![name]);
        store.close().await;
        for entry in std::fs::read_dir(tmp.path()).expect("dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "secret value found in a database file"
            );
        }
    }

    #[tokio::test]
    async fn secrets_in_use_cannot_be_deleted_and_unknown_ones_are_reported() {
        let (_tmp, store) = temp_store().await;
        let mem = MemorySecretStore::default();
        let name = SecretName::parse("tok").expect("name");
        set_secret(&store, &mem, &name, SecretValue::new("v"))
            .await
            .expect("set");
        let mut n = NewAccount::new(AccountKind::Websocket, "feed").with_url("ws://h/");
        n.headers = vec![HeaderRef::parse("Authorization=tok").expect("header")];
        let a = store.add_account(n).await.expect("add");
        let err = delete_secret(&store, &mem, &name)
            .await
            .expect_err("in use");
        assert!(err.to_string().contains("feed"), "{err}");
        assert!(
            mem.get(&name).expect("get").is_some(),
            "nothing lost on refusal"
        );
        store.mark_removed(a.id).await.expect("remove");
        delete_secret(&store, &mem, &name).await.expect("delete");
        assert!(mem.get(&name).expect("get").is_none());
        let err = delete_secret(&store, &mem, &name)
            .await
            .expect_err("unknown");
        assert!(matches!(err, Error::Input(InputError::UnknownSecret(_))));
    }

    #[tokio::test]
    async fn empty_values_are_refused() {
        let (_tmp, store) = temp_store().await;
        let mem = MemorySecretStore::default();
        let name = SecretName::parse("x").expect("name");
        let err = set_secret(&store, &mem, &name, SecretValue::new(""))
            .await
            .expect_err("empty");
        assert!(err.is_input());
        assert!(store.secret_names().await.expect("names").is_empty());
    }
}
