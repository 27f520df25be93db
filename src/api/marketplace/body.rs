//! What every marketplace route reads from a request: the caller, and bodies that must be
//! JSON objects.

use actix_web::HttpRequest;
use serde::Deserialize;
use serde_json::Value;

use super::MarketError;
use crate::api::AppState;
use crate::auth::{token_from_request, AuthError, Identity};

/// The caller, who must be logged in.
pub async fn me(req: &HttpRequest, state: &AppState) -> Result<Identity, MarketError> {
    let token = token_from_request(req).ok_or(AuthError::Missing)?;
    Ok(state.auth.authenticate(&token).await?)
}

/// The caller of a public route: nobody without a token; a token that is sent must be valid.
pub async fn maybe_me(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<Identity>, MarketError> {
    match token_from_request(req) {
        None => Ok(None),
        Some(token) => Ok(Some(state.auth.authenticate(&token).await?)),
    }
}

/// For `Option<Option<T>>` fields: absent is `None` (no change), `null` is `Some(None)`
/// (clear), a value is `Some(Some(v))`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A JSON body that must be an object: serde reads a struct from an array too (by field
/// position), which no client of these routes means; `["Pool"]` is 400 like any wrong type.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        if !value.is_object() {
            return Err(D::Error::custom("the body must be a JSON object"));
        }
        T::deserialize(value).map(Object).map_err(D::Error::custom)
    }
}
