//! The OpenAPI document of the public API (`GET /openapi.json`).

use super::problem::{ProblemBody, ProblemCode};
use super::verifications::{self, CheckBody, CheckView, DeliveryView, StartBody, VerificationView};
use super::{bindings, camara, mo_logins, number_recycling, registry, sim_swap, tx, voice_calls};
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
        mo_logins::get,
        registry::bind,
        registry::unbind,
        registry::services,
        registry::subscriber_unbind,
        sim_swap::check,
        sim_swap::retrieve_date,
        tx::open,
        tx::get_session,
        tx::pay,
        tx::list,
        tx::get_transaction,
        bindings::create,
        bindings::get,
        bindings::confirm,
        bindings::remove,
        bindings::list,
        bindings::receive,
        registry::subscriber_move,
        number_recycling::check
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
        registry::BindingView,
        registry::DirectoryEntry,
        registry::UnbindBody,
        sim_swap::CreateCheckSimSwap,
        sim_swap::CheckSimSwapInfo,
        sim_swap::CreateSimSwapDate,
        sim_swap::SimSwapInfo,
        tx::OpenBody,
        tx::PayBody,
        tx::SessionView,
        tx::TransactionView,
        tx::TransactionList,
        tx::RefusalView,
        bindings::BindingView,
        bindings::CreateBody,
        bindings::ConfirmBody,
        bindings::ConfirmView,
        bindings::RemoveBody,
        bindings::BindingList,
        bindings::ReceivedView,
        registry::UnbindView,
        registry::MoveBody,
        registry::MoveView,
        registry::DirectoryView,
        number_recycling::CheckRequest,
        number_recycling::CheckResponse,
        camara::CamaraError,
        ProblemBody,
        ProblemCode
    )),
    modifiers(&BearerAuth, &EdgeResponses),
    security(("bearer" = [])),
    tags(
        (name = "verifications", description = "Verify phone numbers with one-time codes"),
        (name = "mo-login", description = "Log in or register by sending one SMS: the network vouches for the sender's number"),
        (name = "registry", description = "The carrier's number-binding registry: app platforms bind the numbers of their accounts; a recycled number's bindings are purged and every bound app told"),
        (name = "txrelay", description = "The carrier–bank relay's subscriber directory: CAMARA SIM Swap (did the number move to another SIM lately, and when)"),
        (name = "bindings", description = "The app side of a carrier's registry: an account's number bound on a typed SMS code and reported to the carrier; the carrier's notifications applied once"),
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

/// Adds the answers the edge and the extractors can give to any operation:
/// 413 and 415 for a body, 429 where a wrong API key is counted, 408 and
/// 503 where the request bounds apply (all but the MO-login long poll).
#[derive(Debug)]
struct EdgeResponses;

impl Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    super::problem::PROBLEM_CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("delete", item.delete.as_mut()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                // No operation-level security means the document's: the API key.
                let bearer = op
                    .security
                    .as_ref()
                    .is_none_or(|s| serde_json::to_string(s).is_ok_and(|j| j.contains("bearer")));
                let long_poll = method == "get" && path == "/v1/mo-logins/{token}";
                let mut add = |code: &str, what: &str| {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| problem(what).into());
                };
                // Every operation that takes a JSON body (a DELETE with a
                // proof does too).
                if method == "post" || op.request_body.is_some() {
                    add("413", "payload_too_large (the body is over 16 KiB)");
                    add("415", "invalid_json (not sent as application/json)");
                }
                if bearer {
                    add(
                        "429",
                        "rate_limited (too many wrong API keys from this address, or a limit of the operation); see Retry-After",
                    );
                }
                if !long_poll {
                    add(
                        "408",
                        "request_timeout (not read and answered within api.request_timeout)",
                    );
                    add(
                        "503",
                        "service_unavailable (more requests in progress than api.max_in_flight); see Retry-After",
                    );
                }
            }
        }
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
