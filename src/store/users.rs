//! User accounts. Uniqueness (phone, email, username) is enforced by the
//! database: a losing concurrent insert gets `Conflict`, never a duplicate.

use super::Row;

use super::{now, Store};

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub has_password: bool,
    /// An email given but never proven by a code: a contact, never a sign-in key.
    pub contact_email: Option<String>,
    /// A phone number given but never proven by a code.
    pub contact_phone: Option<String>,
    pub metadata: serde_json::Value,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new account; `email_key`/`username_key` are the lookup forms.
pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: Option<&'a str>,
    pub username_key: Option<String>,
    pub email: Option<&'a str>,
    pub email_key: Option<&'a str>,
    pub email_verified: bool,
    pub phone: Option<&'a str>,
    pub phone_verified: bool,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
    pub contact_email: Option<&'a str>,
    pub contact_phone: Option<&'a str>,
}

#[derive(Debug)]
pub enum InsertUser {
    Created(Box<User>),
    /// Which identifier is taken: `phone`, `email` or `username`.
    Conflict(&'static str),
}

const COLUMNS: &str = "id, username, email, email_verified, phone, phone_verified, first_name, last_name, password_hash, metadata, is_admin, disabled, created_at, updated_at, contact_email, contact_phone";

pub(super) fn from_row(r: &Row) -> anyhow::Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        email: r.try_get("email")?,
        email_verified: r.try_get::<i64, _>("email_verified")? != 0,
        phone: r.try_get("phone")?,
        phone_verified: r.try_get::<i64, _>("phone_verified")? != 0,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        has_password: r.try_get::<Option<String>, _>("password_hash")?.is_some(),
        contact_email: r.try_get("contact_email")?,
        contact_phone: r.try_get("contact_phone")?,
        metadata: serde_json::from_str(&r.try_get::<String, _>("metadata")?)?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The column that finds an account by a phone (E.164) or an email (its key).
pub(super) fn identifier_column(kind: &str) -> &'static str {
    match kind {
        "phone" => "phone",
        _ => "email_key",
    }
}

/// What `Store::rekey_email` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rekeyed {
    /// The account has its email in the canonical form now.
    Done,
    /// The account's email changed (or the account went) since it was read: left as it is.
    Changed,
    /// Another account holds the canonical key: left as it is.
    Taken,
    /// Another transaction held the row (or, on SQLite, the database) past
    /// the lock timeout: not changed.
    Busy,
}

impl Store {
    pub async fn user(&self, id: &str) -> anyhow::Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        let row = self.db.query(sql).bind(id).fetch_optional().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The statement of `user_by_identifier`, for a caller that sends it
    /// with others (`Store::consume_verified_identifier`).
    pub(super) fn user_by_identifier_query(&self, kind: &str, key: &str) -> super::db::Query<'_> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE {} = $1", identifier_column(kind));
        self.db.query(sql).bind(key.to_string())
    }

    /// The user holding this phone (E.164) or email (lookup form).
    pub async fn user_by_identifier(&self, kind: &str, key: &str) -> anyhow::Result<Option<User>> {
        let row = self.user_by_identifier_query(kind, key).fetch_optional().await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Creates the account, or says which unique field is taken. No
    /// constraint error is raised (`ON CONFLICT DO NOTHING`), so a conflict
    /// does not abort the PostgreSQL transaction of the group it runs in.
    pub async fn insert_user(&self, u: &NewUser<'_>) -> anyhow::Result<InsertUser> {
        let now = now();
        let sql = format!(
            "INSERT INTO users (id, username, username_key, email, email_key, email_verified, phone, phone_verified,
               first_name, last_name, password_hash, metadata, created_at, updated_at, contact_email, contact_phone)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)
             ON CONFLICT DO NOTHING
             RETURNING {COLUMNS}"
        );
        let created = self
            .db
            .query(sql)
            .bind(u.id)
            .bind(u.username)
            .bind(u.username_key.as_deref())
            .bind(u.email)
            .bind(u.email_key)
            .bind(u.email_verified as i64)
            .bind(u.phone)
            .bind(u.phone_verified as i64)
            .bind(u.first_name)
            .bind(u.last_name)
            .bind(u.password_hash)
            .bind(u.metadata.to_string())
            .bind(now)
            .bind(u.contact_email)
            .bind(u.contact_phone)
            .fetch_optional()
            .await?;
        if let Some(row) = created {
            return Ok(InsertUser::Created(Box::new(from_row(&row)?)));
        }
        let taken = self
            .db
            .query(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE phone = $1) THEN 'phone'
                             WHEN EXISTS (SELECT 1 FROM users WHERE email_key = $2) THEN 'email'
                             ELSE 'username' END AS taken",
            )
            .bind(u.phone)
            .bind(u.email_key)
            .fetch_one()
            .await?;
        Ok(InsertUser::Conflict(
            match taken.try_get::<String, _>("taken")?.as_str() {
                "phone" => "phone",
                "email" => "email",
                _ => "username",
            },
        ))
    }

    /// Users, newest first; `search` matches username, email or phone
    /// (case-insensitive substring; `%` and `_` are themselves, not `LIKE`
    /// wildcards). The escape is `!`, not a backslash, which PostgreSQL
    /// reads as a quote's escape when `standard_conforming_strings` is off.
    pub async fn users(&self, search: Option<&str>, limit: i64) -> anyhow::Result<Vec<User>> {
        let literal = search
            .unwrap_or("")
            .to_lowercase()
            .replace('!', "!!")
            .replace('%', "!%")
            .replace('_', "!_");
        let pattern = format!("%{literal}%");
        let sql = format!(
            "SELECT {COLUMNS} FROM users
             WHERE username_key LIKE $1 ESCAPE '!' OR email_key LIKE $1 ESCAPE '!' OR phone LIKE $1 ESCAPE '!' OR id = $2
             ORDER BY created_at DESC, id LIMIT $3"
        );
        let rows = self
            .db
            .query(sql)
            .bind(pattern)
            .bind(search.unwrap_or(""))
            .bind(limit)
            .fetch_all()
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The user whose `sub`, username, email or phone (E.164) this is.
    pub async fn find_user(&self, key: &str) -> anyhow::Result<Option<User>> {
        Ok(self.users_matching(key, None, None).await?.into_iter().next())
    }

    /// Every user (at most three) whose `sub`, username, email or phone
    /// (E.164) is `key`, or whose phone is `phone` or email key `email`
    /// (`key` in E.164, or as an email's key): the `sub`'s first. More than
    /// one is an ambiguous key (a username made of another user's phone
    /// number in national form).
    pub async fn users_matching(
        &self,
        key: &str,
        phone: Option<&str>,
        email: Option<&str>,
    ) -> anyhow::Result<Vec<User>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users
             WHERE id = $1 OR username_key = $2 OR email_key = $2 OR phone = $1 OR phone = $3 OR email_key = $4
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END, id LIMIT 3"
        );
        let lower = key.to_lowercase();
        let rows = self
            .db
            .query(sql)
            .bind(key)
            .bind(lower.as_str())
            .bind(phone.unwrap_or(key))
            .bind(email.unwrap_or(&lower))
            .fetch_all()
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn set_user_flag(&self, id: &str, flag: UserFlag, on: bool) -> anyhow::Result<bool> {
        let sql = match flag {
            UserFlag::Disabled => "UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1",
            UserFlag::Admin => "UPDATE users SET is_admin = $2, updated_at = $3 WHERE id = $1",
        };
        let r = self
            .db
            .query(sql)
            .bind(id)
            .bind(on as i64)
            .bind(now())
            .execute()
            .await?;
        if matches!(flag, UserFlag::Disabled) && on {
            // A disabled account is signed out on every node.
            self.end_sessions_of(id).await?;
        }
        Ok(r.rows_affected() == 1)
    }

    /// Sets a verified phone (`key` = E.164) or email (`key` = lookup form) on
    /// the account; `false` when another account already uses it.
    pub async fn set_identifier(&self, id: &str, kind: &str, address: &str, key: &str) -> anyhow::Result<bool> {
        let query = match kind {
            "phone" => self
                .db
                .query("UPDATE users SET phone = $2, phone_verified = 1, contact_phone = NULL, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(address)
                .bind(now()),
            _ => self
                .db
                .query("UPDATE users SET email = $2, email_key = $3, email_verified = 1, contact_email = NULL, updated_at = $4 WHERE id = $1")
                .bind(id)
                .bind(address)
                .bind(key)
                .bind(now()),
        };
        let result = query.execute().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` accounts with an email (id, email, email key; `''`
    /// for a key that is missing, which no write of Sesame's leaves), in
    /// id order after `after`: a walk of the whole table in bounded batches.
    pub async fn users_with_email_after(
        &self,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, String, String)>> {
        let rows = self
            .db
            .query("SELECT id, email, COALESCE(email_key, '') AS email_key FROM users WHERE id > $1 AND email IS NOT NULL ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all()
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("email")?, r.try_get("email_key")?)))
            .collect()
    }

    /// Whether the data upgrade `name` ran to its end (`data_upgrades`).
    pub async fn upgrade_done(&self, name: &str) -> anyhow::Result<bool> {
        let row = self
            .db
            .query("SELECT 1 AS one FROM data_upgrades WHERE name = $1")
            .bind(name)
            .fetch_optional()
            .await?;
        Ok(row.is_some())
    }

    /// Records that the data upgrade `name` ran to its end.
    pub async fn upgrade_finished(&self, name: &str) -> anyhow::Result<()> {
        self.db
            .query("INSERT INTO data_upgrades (name, done_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now())
            .execute()
            .await?;
        Ok(())
    }

    /// Gives an account's email its canonical address and key, if the
    /// account still has the address and key it was read with (`old`): a
    /// change made since (the account page, the admin API) is never undone.
    pub async fn rekey_email(&self, id: &str, old: (&str, &str), address: &str, key: &str) -> anyhow::Result<Rekeyed> {
        let result = self
            .db
            .query("UPDATE users SET email = $2, email_key = $3, updated_at = $4 WHERE id = $1 AND email = $5 AND COALESCE(email_key, '') = $6")
            .bind(id)
            .bind(address)
            .bind(key)
            .bind(now())
            .bind(old.0)
            .bind(old.1)
            .execute()
            .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => Ok(Rekeyed::Done),
            Ok(_) => Ok(Rekeyed::Changed),
            Err(e) if e.is_unique_violation() => Ok(Rekeyed::Taken),
            Err(e) if e.is_held() => Ok(Rekeyed::Busy),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the profile names (the account page).
    pub async fn set_names(&self, id: &str, first_name: &str, last_name: &str) -> anyhow::Result<()> {
        self.db
            .query("UPDATE users SET first_name = $2, last_name = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(first_name)
            .bind(last_name)
            .bind(now())
            .execute()
            .await?;
        Ok(())
    }

    /// Deletes the account with its sessions and consents (the caller revokes its tokens).
    pub async fn delete_user(&self, id: &str) -> anyhow::Result<bool> {
        self.end_sessions_of(id).await?;
        self.db
            .query("DELETE FROM consents WHERE user_id = $1")
            .bind(id)
            .execute()
            .await?;
        let r = self
            .db
            .query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute()
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

#[derive(Debug, Clone, Copy)]
pub enum UserFlag {
    Disabled,
    Admin,
}

impl Store {
    /// The user signing in with this username or email (case-insensitive), with their password hash.
    pub async fn user_for_password(&self, login: &str) -> anyhow::Result<Option<(User, Option<String>)>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1 OR email_key = $1 LIMIT 1");
        let row = self.db.query(sql).bind(login.to_lowercase()).fetch_optional().await?;
        row.map(|r| Ok((from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// The account's password hash, if it has a password.
    pub async fn password_hash(&self, id: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .db
            .query("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional()
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("password_hash"))
            .transpose()?
            .flatten())
    }

    /// Sets the given username and/or password hash; `Conflict("username")` when the name is taken.
    pub async fn set_credentials(
        &self,
        id: &str,
        username: Option<&str>,
        password_hash: Option<&str>,
    ) -> anyhow::Result<InsertUser> {
        let sql = format!(
            "UPDATE users SET username = COALESCE($2, username), username_key = COALESCE($3, username_key),
               password_hash = COALESCE($4, password_hash), updated_at = $5 WHERE id = $1
             RETURNING {COLUMNS}"
        );
        let result = self
            .db
            .query(sql)
            .bind(id)
            .bind(username)
            .bind(username.map(str::to_lowercase))
            .bind(password_hash)
            .bind(now())
            .fetch_optional()
            .await;
        match result {
            Ok(Some(row)) => Ok(InsertUser::Created(Box::new(from_row(&row)?))),
            Ok(None) => anyhow::bail!("no such user"),
            Err(e) if e.is_unique_violation() => Ok(InsertUser::Conflict("username")),
            Err(e) => Err(e.into()),
        }
    }
}
