//! One tenant can never read or change another tenant's verifications.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_rt::test(system = "verifyd::system::System")]
async fn another_tenant_cannot_see_check_or_resend_a_verification() {
    let app = spawn_app().await;
    let created = app.create_verification("shared-user", "+14155552674", "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to("+14155552674").await;
    let other_name = format!("{}-other", app.tenant);
    let other = app.other_tenant(&other_name).await;
    let mut others_events = app.capture_events(&format!("{other_name}.#")).await;

    let read = app.get_as(&other, &format!("/v1/verifications/{id}")).await;
    assert_eq!(read.status, 404);
    let check = app.post_json_as(&other, &format!("/v1/verifications/{id}/check"), &json!({ "code": code })).await;
    assert_eq!(check.status, 404, "even with the right code");
    let resend = app.post_json_as(&other, &format!("/v1/verifications/{id}/resend"), &json!({})).await;
    assert_eq!(resend.status, 404);
    // The owner's verification is untouched: no attempt used, one send.
    let mine = app.get(&format!("/v1/verifications/{id}")).await;
    assert_eq!(mine.body["attempts_left"], 5);
    assert_eq!(mine.body["sends"], 1);
    assert_eq!(mine.body["status"], "pending");
    assert_eq!(app.check(&id, &code).await.body["status"], "approved");
    let others_view = app.get_as(&other, "/v1/accounts/shared-user/factors").await;
    assert_eq!(others_view.body["factors"], json!([]), "the factor belongs to the first tenant only");
    let leaked = others_events.drain(std::time::Duration::from_millis(500)).await;
    assert!(leaked.is_empty(), "the other tenant's binding received {} events", leaked.len());
}
