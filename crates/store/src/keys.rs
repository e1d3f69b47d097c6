//! The `api_keys` table: keys are made here (random, shown once), kept only as their SHA-256
//! digest, listed without it and revoked. Every change that matters to access is announced by the
//! table's trigger (`NOTIFY gitrev_keys`, sql/0003_keys.sql) in the transaction that made it, so
//! every replica's keyring reloads when (and only when) it commits, even for a key that went with
//! its user.

use std::fmt;

use chrono::NaiveDateTime;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{Store, StoreError};

/// The channel key changes are announced on, by the table's trigger (its payload is not used: a
/// replica reloads them all).
pub const CHANNEL: &str = "gitrev_keys";

/// What a key may do; each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every GET of the API.
    Read,
    /// Also POST, PUT, PATCH and DELETE on users, urls and events.
    Write,
    /// Also the keys themselves and `POST /users/bulk`.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as stored and listed: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub scope: Scope,
    /// The key's public start (`gk_` and 8 characters), for telling keys apart.
    pub prefix: String,
    /// This key's own rate limit; `None`: the service's default.
    pub limit: KeyLimit,
    /// The one user this key may see and change; `None`: every user its scope allows.
    pub user_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

/// A key's own rate limit (requests per second, burst); each `None` takes the service's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyLimit {
    pub rate: Option<u32>,
    pub burst: Option<u32>,
}

fn limit_from(rate: Option<i32>, burst: Option<i32>) -> KeyLimit {
    // The table's CHECKs keep both positive.
    KeyLimit {
        rate: rate.and_then(|r| u32::try_from(r).ok()),
        burst: burst.and_then(|b| u32::try_from(b).ok()),
    }
}

/// A key as its holder presents it. `Debug` shows only its prefix.
pub struct KeySecret(String);

impl KeySecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({}…)", prefix_of(&self.0))
    }
}

/// What every key starts with: tells a gitrev key apart from other secrets (e.g. to a secret
/// scanner).
pub const KEY_START: &str = "gk_";
/// Random characters in the prefix, then in the secret part: 62^40, about 238 bits in all.
const PREFIX_CHARS: usize = 8;
const SECRET_CHARS: usize = 32;

/// The public start of a key (`gk_` and 8 characters), or as much of it as there is.
pub fn prefix_of(key: &str) -> &str {
    let end = (KEY_START.len() + PREFIX_CHARS).min(key.len());
    key.get(..end).unwrap_or("")
}

/// SHA-256 of a presented key: what is stored and looked up.
pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// A fresh key: `gk_<8 characters>_<32 characters>`, from the thread's CSPRNG (ChaCha, seeded and
/// reseeded from the operating system).
fn generate() -> String {
    let mut rng = rand::rng();
    format!(
        "{KEY_START}{}_{}",
        Alphanumeric.sample_string(&mut rng, PREFIX_CHARS),
        Alphanumeric.sample_string(&mut rng, SECRET_CHARS)
    )
}

const COLUMNS: &str = "id, name, scope, prefix, created_at, last_used_at, rate, burst, user_id";

fn key_from_row(row: &Row) -> ApiKey {
    let scope: String = row.get(2);
    ApiKey {
        id: row.get(0),
        name: row.get(1),
        // The table's CHECK admits only these three.
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        prefix: row.get(3),
        limit: limit_from(row.get(6), row.get(7)),
        user_id: row.get(8),
        created_at: row.get(4),
        last_used_at: row.get(5),
    }
}

/// What a replica's keyring loads: the live keys by digest, and whether any key was ever made.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    pub live: Vec<([u8; 32], KeyGrant)>,
    pub any_made: bool,
}

/// A live key as a replica's keyring holds it: what a request is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub id: i64,
    pub scope: Scope,
    pub limit: KeyLimit,
    /// The one user this key may see and change.
    pub user_id: Option<i64>,
}

impl Store {
    /// Runs `sql` (prepared once per pooled connection) with `params`: its rows.
    async fn key_rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut conn = self.conn().await?;
        let stmt = conn.prepared(sql).await?;
        conn.client
            .query(&stmt, params)
            .await
            .map_err(StoreError::classify)
    }

    /// Makes a key; the secret is in the answer and nowhere else.
    pub async fn create_key(
        &self,
        name: &str,
        scope: Scope,
        user_id: Option<i64>,
        limit: KeyLimit,
    ) -> Result<(ApiKey, KeySecret), StoreError> {
        let secret = generate();
        // The table's trigger announces it (NOTIFY gitrev_keys) when it commits.
        let rows = self
            .key_rows(
                &format!(
                    "INSERT INTO api_keys (name, scope, user_id, prefix, digest, rate, burst)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                ),
                &[
                    &name,
                    &scope.as_str(),
                    &user_id,
                    &prefix_of(&secret),
                    &digest(secret.as_bytes()).as_slice(),
                    &limit.rate.and_then(|r| i32::try_from(r).ok()),
                    &limit.burst.and_then(|b| i32::try_from(b).ok()),
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Internal("inserting a key returned no row".into()))?;
        Ok((key_from_row(row), KeySecret(secret)))
    }

    /// The keys not revoked, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .key_rows(
                &format!("SELECT {COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// Revokes a key; `NotFound("key")` when there is no such key or it was already revoked.
    pub async fn revoke_key(&self, id: i64) -> Result<(), StoreError> {
        // The table's trigger announces it (NOTIFY gitrev_keys) when it commits.
        let revoked = self
            .key_rows(
                "UPDATE api_keys SET revoked_at = now() AT TIME ZONE 'UTC'
                 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
                &[&id],
            )
            .await?;
        if revoked.is_empty() {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }

    /// Every live key by digest, for a replica's keyring, and whether any key was ever made
    /// (revoked ones included: revoking the last key does not open the API).
    pub async fn live_keys(&self) -> Result<KeySet, StoreError> {
        let rows = self
            .key_rows(
                "SELECT digest, id, scope, rate, burst, user_id FROM api_keys
                 WHERE revoked_at IS NULL
                 UNION ALL
                 SELECT NULL, 0, '', NULL, NULL, NULL WHERE EXISTS (SELECT FROM api_keys)",
                &[],
            )
            .await?;
        let mut set = KeySet::default();
        for row in &rows {
            let Some(digest) = row.get::<_, Option<&[u8]>>(0) else {
                set.any_made = true;
                continue;
            };
            let scope: String = row.get(2);
            if let (Ok(digest), Some(scope)) = (digest.try_into(), Scope::parse(&scope)) {
                set.live.push((
                    digest,
                    KeyGrant {
                        id: row.get(1),
                        scope,
                        limit: limit_from(row.get(3), row.get(4)),
                        user_id: row.get(5),
                    },
                ));
            }
        }
        Ok(set)
    }

    /// Writes when keys were last used (`(id, when)`, at most one per key), in one statement; a
    /// time never moves back.
    pub async fn touch_keys(&self, used: &[(i64, NaiveDateTime)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = used.iter().map(|u| u.0).collect();
        let times: Vec<NaiveDateTime> = used.iter().map(|u| u.1).collect();
        self.key_rows(
            "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
             FROM unnest($1::bigint[], $2::timestamp[]) AS u(id, at) WHERE k.id = u.id",
            &[&ids, &times],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_start_with_their_prefix() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_START.len() + PREFIX_CHARS + 1 + SECRET_CHARS);
        assert!(a.starts_with(KEY_START));
        assert_eq!(prefix_of(&a).len(), KEY_START.len() + PREFIX_CHARS);
        assert!(a.starts_with(prefix_of(&a)));
        assert_eq!(prefix_of("gk_"), "gk_");
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let secret = KeySecret(generate());
        let shown = format!("{secret:?}");
        assert!(!shown.contains(&secret.0[KEY_START.len() + PREFIX_CHARS..]));
        assert!(shown.contains(prefix_of(&secret.0)));
    }

    #[test]
    fn scopes_round_trip_and_are_ordered() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("root"), None);
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
    }
}
