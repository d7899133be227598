//! The secrets behind every code: the keys that hash and seal codes (`keys`),
//! authenticator-app secrets and their steps (`totp`), recovery codes
//! (`recovery`), the shape of backup codes (`backup`). Issuing and checking a verification's code is the
//! verification service's (`verification`); backup codes are the account's.

pub mod backup;
pub mod keys;
pub mod recovery;
pub mod totp;
