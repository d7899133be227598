//! PostgreSQL access, one module per table family. Rows are read with runtime
//! queries into `FromRow` structs and converted to domain types with `TryFrom`,
//! so a build never needs a database. A small enum kept as `text` (with a
//! CHECK listing its values) decodes straight into its type (`text_enum!`).

/// Reads an enum kept as `text` through its `FromStr` (writes bind `as_str()`):
/// a value outside the enum is a decode error naming the column, never a default.
macro_rules! text_enum {
    ($t:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $t {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?.parse::<$t>()?)
            }
        }
    };
}

text_enum!(crate::domain::challenge::ChallengeStatus);
text_enum!(crate::domain::challenge::Purpose);
text_enum!(crate::domain::policy::TwoFactorPolicy);
text_enum!(crate::domain::webhook::DeliveryStatus);

pub mod api_keys;
pub mod attempts;
pub mod audit;
pub mod backup_codes;
pub mod branding;
pub mod challenges;
pub mod dead_letters;
pub mod factors;
pub mod keys;
pub mod lockouts;
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
