//! How often codes may be asked for and tried. Every limit is a GCRA bucket
//! ("`count` per `window`"): `config` holds the limits, `buckets` which ones
//! a send or a check takes from, `memory` the in-process layer (governor, no
//! database round trip for a flood), `postgres` the same buckets taken in the
//! transaction that records the send (so the answer holds across processes),
//! `lease` the cells of the buckets a tenant's sends share, taken a few at a time,
//! `lockout` the per-account lockout after wrong codes in a row, and
//! `refusal` what a refused request is told.

mod buckets;
mod config;
mod lease;
pub mod lockout;
mod memory;
mod postgres;
mod refusal;

pub use buckets::{Bucket, Send, split_shared};
pub use config::{Limit, Limits};
pub use lease::SharedLeases;
pub use memory::{Housekeeping, Limiters};
pub use postgres::{enforce_in_tx, prune};
pub use refusal::{Refusal, Scope, Throttled, retry_after_secs};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;
    use verifyd_providers::domain::{Destination, EmailAddress, PhoneNumber};

    use super::*;
    use crate::ids::AccountId;

    fn send<'a>(tenant: Uuid, to: &'a Destination, account: &'a AccountId) -> Send<'a> {
        Send { tenant_id: tenant, to, account, ip: None }
    }

    fn phone(number: &str) -> Destination {
        Destination::from(PhoneNumber::parse(number).unwrap())
    }

    fn email(address: &str) -> Destination {
        Destination::from(EmailAddress::parse(address).unwrap())
    }

    #[test]
    fn an_email_takes_its_mailbox_and_its_domain_and_no_country() {
        let limits =
            Limits { per_email: Limit::new(2, 600), per_email_domain: Limit::new(3, 600), ..Limits::default() };
        let account = AccountId::parse("a").unwrap();
        let to = email("Ada+news@Example.COM");
        let scopes: Vec<Scope> =
            limits.send_buckets(&send(Uuid::nil(), &to, &account)).iter().map(|b| b.scope).collect();
        assert_eq!(scopes, [Scope::Email, Scope::EmailDomain, Scope::Account, Scope::Tenant]);
        let l =
            Limiters::new(&Limits { per_account: Limit::new(0, 1), per_tenant: Limit::new(0, 1), ..limits.clone() });
        let take = |address: &str| l.admit(&limits.send_buckets(&send(Uuid::nil(), &email(address), &account)));
        assert!(take("ada@example.com").is_ok());
        // The same mailbox, another case and another +tag: its second and last code.
        assert!(take("ADA+other@example.com").is_ok());
        assert_eq!(take("ada@example.com").unwrap_err().by, Refusal::Email);
        // Another mailbox at the same domain takes the domain's third and last cell.
        assert!(take("grace@example.com").is_ok());
        assert_eq!(take("alan@example.com").unwrap_err().by, Refusal::EmailDomain);
        assert!(take("alan@example.org").is_ok());
    }

    #[test]
    fn governor_allows_the_burst_then_says_how_long_to_wait() {
        let limits = Limits { per_phone: Limit::new(3, 600), ..Limits::off() };
        let l = Limiters::new(&limits);
        let tenant = Uuid::new_v4();
        let phone = phone("+14155552671");
        let account = AccountId::parse("a").unwrap();
        let buckets = limits.send_buckets(&send(tenant, &phone, &account));
        for _ in 0..3 {
            assert!(l.admit(&buckets).is_ok());
        }
        let t = l.admit(&buckets).unwrap_err();
        assert_eq!(t.by, Refusal::Phone);
        assert!(t.retry_after > Duration::from_secs(190) && t.retry_after <= Duration::from_secs(200), "{t:?}");
        // Another tenant's identical phone has its own budget.
        assert!(l.admit(&limits.send_buckets(&send(Uuid::new_v4(), &phone, &account))).is_ok());
    }

    #[test]
    fn a_limit_turned_off_takes_no_bucket_and_no_ip_takes_no_ip_bucket() {
        let limits = Limits::default();
        let phone = phone("+447911123456");
        let account = AccountId::parse("a").unwrap();
        let without_ip = limits.send_buckets(&send(Uuid::new_v4(), &phone, &account));
        assert_eq!(
            without_ip.iter().map(|b| b.scope).collect::<Vec<_>>(),
            [Scope::Phone, Scope::Account, Scope::Country, Scope::Tenant]
        );
        let with_ip = Send { ip: Some("203.0.113.7".parse().unwrap()), ..send(Uuid::new_v4(), &phone, &account) };
        assert_eq!(limits.send_buckets(&with_ip).len(), 5);
        assert!(Limits::off().send_buckets(&with_ip).is_empty());
    }

    #[test]
    fn a_country_override_has_its_own_quota_in_process_and_names_only_known_countries() {
        let mut limits = Limits { per_country: Limit::new(2, 600), ..Limits::off() };
        limits.per_country_overrides.insert("US".into(), Limit::new(4, 600));
        limits.per_country_overrides.insert("CA".into(), Limit::new(0, 600));
        assert_eq!(limits.validate(), Ok(()));
        let l = Limiters::new(&limits);
        let account = AccountId::parse("a").unwrap();
        let taken = |number: &str| {
            let phone = phone(number);
            let buckets = limits.send_buckets(&send(Uuid::nil(), &phone, &account));
            (0..6).take_while(|_| l.admit(&buckets).is_ok()).count()
        };
        assert_eq!(taken("+447911123456"), 2, "the default");
        assert_eq!(taken("+14155552671"), 4, "the override");
        assert_eq!(taken("+16135550123"), 6, "count 0 lifts the limit for that country");

        for bad in ["us", "UK", "XX", "USA"] {
            let mut limits = Limits::default();
            limits.per_country_overrides.insert(bad.into(), Limit::new(1, 60));
            assert!(limits.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_follows_recent_traffic() {
        let limits = Limits { per_phone: Limit::new(10, 1), ..Limits::off() };
        let l = Limiters::new(&limits);
        let account = AccountId::parse("a").unwrap();
        for n in 0..100 {
            let phone = phone(&format!("+4479111{n:05}"));
            assert!(l.admit(&limits.send_buckets(&send(Uuid::nil(), &phone, &account))).is_ok());
        }
        assert_eq!(l.len(), 100);
        // One cell comes back every 100 ms; governor forgets a key a cell after that.
        std::thread::sleep(Duration::from_millis(300));
        l.housekeeping();
        assert!(l.is_empty(), "full buckets are forgotten: {} left", l.len());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(119_001)), 120);
        assert_eq!(retry_after_secs(Duration::from_secs(120)), 120);
    }
}
