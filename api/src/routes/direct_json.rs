//! A JSON response body written straight from the value.
//!
//! poem-openapi's `Json<T>` turns the value into a `serde_json::Value` tree and then into bytes;
//! `DirectJson<T>` serialises `T` with serde in one pass. It documents exactly what `Json<T>`
//! documents, so `T`'s `Object` and `Serialize` derives must write the same JSON: each type used
//! here has a test that checks they do.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    payload::{Json, Payload},
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

pub struct DirectJson<T>(pub T);

impl<T: Type> Payload for DirectJson<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + Serialize> IntoResponse for DirectJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder().content_type(Self::CONTENT_TYPE).body(body),
            Err(err) => {
                tracing::error!(error = %err, "a response body does not serialise");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
