//! The OpenAPI document of the public API (`GET /openapi.json`).

use super::problem::{ProblemBody, ProblemCode};
use super::verifications::{self, CheckBody, CheckView, DeliveryView, StartBody, VerificationView};
use super::{mo_logins, voice_calls};
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "verigate",
        description = "Phone-number verification: start a verification (a code is sent to the number), check the code the user typed, show or cancel it. Errors are `application/problem+json` with a stable `code`."
    ),
    paths(
        verifications::start,
        verifications::get,
        verifications::check,
        verifications::cancel,
        voice_calls::request,
        voice_calls::get,
        mo_logins::create,
        mo_logins::get
    ),
    components(schemas(
        StartBody,
        CheckBody,
        VerificationView,
        CheckView,
        DeliveryView,
        verifications::CallView,
        verifications::FlashCallView,
        crate::store::CallState,
        crate::store::MessageState,
        crate::store::VerificationStatus,
        voice_calls::VoiceCallBody,
        voice_calls::VoiceCallView,
        mo_logins::CreateBody,
        mo_logins::CreatedView,
        mo_logins::LoginView,
        crate::store::MoIntent,
        ProblemBody,
        ProblemCode
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "verifications", description = "Verify phone numbers with one-time codes"),
        (name = "mo-login", description = "Log in or register by sending one SMS: the network vouches for the sender's number"),
        (name = "voice-gateway", description = "Calls that read a third party's code aloud, proven by the service number's key (K2); no API key")
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme (the API key).
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The service's API key: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
    }
}

/// The document as JSON (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}
