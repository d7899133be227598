//! What a request no route takes is answered: a problem document, `405` with
//! `Allow` when the path exists under other methods, `404` otherwise. (A
//! route's method is a guard in actix-web, so without this a wrong method
//! fell through to an empty `404`.)

use std::sync::OnceLock;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, ResponseError};

use super::problem::ApiError;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The app's default service.
pub async fn not_routed(req: HttpRequest) -> HttpResponse {
    if !req.resource_map().has_resource(req.path()) {
        return ApiError::NotFound.error_response();
    }
    method_not_allowed(&req)
}

/// Middleware (`middleware::from_fn`): a `404` or `405` that actix-web
/// answered itself, with an empty body (a resource's own default for a
/// method it has no route for), becomes the problem document `not_routed`
/// gives.
pub async fn problems_for_bare_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let response = next.call(req).await?;
    let status = response.status();
    let bare = matches!(response.response().body().size(), BodySize::None | BodySize::Sized(0));
    if !bare || !matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) {
        return Ok(response.map_into_left_body());
    }
    let (req, _) = response.into_parts();
    let problem =
        if status == StatusCode::NOT_FOUND { ApiError::NotFound.error_response() } else { method_not_allowed(&req) };
    Ok(ServiceResponse::new(req, problem).map_into_right_body())
}

fn method_not_allowed(req: &HttpRequest) -> HttpResponse {
    let allowed = allowed_methods(req.path());
    let mut response = ApiError::MethodNotAllowed(req.method().to_string()).error_response();
    if !allowed.is_empty()
        && let Ok(value) = header::HeaderValue::from_str(&allowed.join(", "))
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// The methods the OpenAPI document lists for a path (empty for a route it
/// does not describe, such as the console's files).
fn allowed_methods(path: &str) -> Vec<String> {
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<String>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(&super::openapi::document()).unwrap_or_default();
        let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
            return Vec::new();
        };
        paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_owned).collect();
                let methods = item
                    .as_object()
                    .map(|m| {
                        m.keys().filter(|k| METHODS.contains(&k.as_str())).map(|k| k.to_ascii_uppercase()).collect()
                    })
                    .unwrap_or_default();
                (segments, methods)
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    let matching: Vec<&(Vec<String>, Vec<String>)> = routes
        .iter()
        .filter(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        .collect();
    // `/factors/totp` is its own route, not `/factors/{factor_id}`: the
    // template with the most literal segments is the one that answered.
    let literals = |template: &[String]| template.iter().filter(|t| !t.starts_with('{')).count();
    let most = matching.iter().map(|(t, _)| literals(t)).max().unwrap_or(0);
    let mut allowed: Vec<String> = matching
        .into_iter()
        .filter(|(t, _)| literals(t) == most)
        .flat_map(|(_, methods)| methods.iter().cloned())
        .collect();
    allowed.sort();
    allowed.dedup();
    allowed
}
