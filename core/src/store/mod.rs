//! PostgreSQL access, one module per table family. Rows are read with runtime
//! queries into `FromRow` structs and converted to domain types with `TryFrom`,
//! so a build never needs a database.

pub mod api_keys;
pub mod attempts;
pub mod audit;
pub mod backup_codes;
pub mod branding;
pub mod challenges;
pub mod dead_letters;
pub mod factors;
pub mod operator_keys;
pub mod organisations;
pub mod processes;
pub mod sessions;
pub mod tenants;
pub mod verifications;

/// A row that PostgreSQL accepted but the domain refuses: a bug or a hand edit.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {table} row {id}: {reason}")]
pub struct CorruptRow {
    pub table: &'static str,
    pub id: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}
