//! Keys and tenants beyond the test's own: keys with some scopes, a second
//! tenant, a deployment operator key.

use super::TestApp;

impl TestApp {
    /// Another tenant with its own key, on the same service.
    /// A new key of this app's tenant holding only `scopes`.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let spec = verifyd::api_keys::KeySpec {
            label: None,
            scopes: verifyd::api_keys::Scopes::parse(scopes).expect("known scopes"),
            sources: Default::default(),
        };
        let tenant = verifyd_core::store::tenants::by_name(&self.pool, &self.tenant).await.unwrap().unwrap();
        let issued =
            verifyd::api_keys::issue(&self.pool, &tenant, &spec, &verifyd::api_keys::console_operator()).await.unwrap();
        issued.secret().to_owned()
    }

    pub async fn other_tenant(&self, name: &str) -> String {
        let spec = verifyd::api_keys::KeySpec::unrestricted(None);
        let (_, key) = verifyd::api_keys::create(&self.pool, name, &spec, &verifyd::api_keys::console_operator())
            .await
            .expect("api key");
        key.secret().to_owned()
    }

    /// A deployment operator key, made as `verifyd keys create --operator` makes one.
    pub async fn operator_key(&self) -> String {
        let sources = verifyd::api_keys::AllowedSources::default();
        let who = verifyd::api_keys::console_operator();
        let issued =
            verifyd::api_keys::operator::create(&self.pool, Some("tests"), &sources, &who).await.expect("operator key");
        issued.secret().to_owned()
    }
}
