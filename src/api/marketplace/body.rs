//! Request bodies of the marketplace routes.

use serde::Deserialize;
use serde_json::Value;

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
