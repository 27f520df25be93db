//! exchange_rates: what one EVG is worth in other currencies.

use std::str::FromStr;

use actix_web::{post, web, HttpResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::super::{caller, EvgError, EvgJson, InvalidBody, Meta, MetaOnly, ResponseMeta};
use super::iso;
use crate::api::AppState;
use crate::store::evergreen_history as store;

/// Most rates one answer holds (rows beyond it, by currency code, are not shown).
pub const EXCHANGE_RATES_MAX: i64 = 100;

/// exchange_rates: takes only `meta`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRates {
    pub meta: Meta,
}

/// One rate: 1 EVG = `rate` units of `currency`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rate {
    /// ISO 4217 code.
    pub currency: String,
    /// A positive decimal, as a string (exact; never a float).
    pub rate: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RatesAnswer {
    pub meta: ResponseMeta,
    /// Always `EVG`.
    pub base: &'static str,
    /// By currency code; possibly empty.
    pub rates: Vec<Rate>,
    /// When the most recently changed rate was set (ISO 8601 UTC); omitted when there are no
    /// rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A stored rate, if it is well-formed: a three-letter uppercase code other than EVG and a
/// positive decimal.
fn rate(currency: &str, raw: &str) -> Option<Rate> {
    let code_ok = currency.len() == 3
        && currency.bytes().all(|b| b.is_ascii_uppercase())
        && currency != "EVG";
    let value = Decimal::from_str(raw.trim())
        .ok()
        .filter(|v| *v > Decimal::ZERO)?;
    code_ok.then(|| Rate {
        currency: currency.to_owned(),
        rate: value.normalize().to_string(),
    })
}

/// The current exchange rates from EVG (the document names the call only; this is the shape
/// chosen): `{meta, base: "EVG", rates: [{currency, rate}], updated_at}` where each rate says
/// 1 EVG = `rate` units of `currency`, a decimal string. The rates are the operator's table
/// `evergreen_exchange_rates` (seeded with USD 0.01: one credit is one US cent), read at
/// each call, at most 100, by currency code; a malformed row is left out (and logged).
/// `updated_at` is when the most recently changed rate was set.
#[utoipa::path(
    tag = "evergreen",
    request_body = ExchangeRates,
    responses(
        (status = 200, body = RatesAnswer, example = json!({
            "meta": {"status": "authorized"}, "base": "EVG",
            "rates": [{"currency": "USD", "rate": "0.01"}],
            "updated_at": "2013-03-21T14:21:33Z"
        })),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/exchange_rates")]
pub async fn exchange_rates(
    state: web::Data<AppState>,
    body: EvgJson<ExchangeRates>,
) -> Result<HttpResponse, EvgError> {
    caller(&state, &body.0.meta).await?;
    let rows = store::exchange_rates(&state.db, EXCHANGE_RATES_MAX).await?;
    let mut rates = Vec::with_capacity(rows.len());
    let mut updated_at = None;
    for (currency, raw, at) in rows {
        match rate(&currency, &raw) {
            Some(rate) => {
                rates.push(rate);
                updated_at = updated_at.max(Some(at));
            }
            None => tracing::warn!(%currency, "a malformed exchange rate is left out"),
        }
    }
    Ok(HttpResponse::Ok().json(RatesAnswer {
        meta: ResponseMeta::authorized(),
        base: "EVG",
        rates,
        updated_at: updated_at.map(iso),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_rates_are_shown() {
        assert_eq!(rate("USD", "0.0100").map(|r| r.rate), Some("0.01".into()));
        assert_eq!(rate("JPY", "1.5").map(|r| r.rate), Some("1.5".into()));
        assert!(rate("usd", "0.01").is_none());
        assert!(rate("EVG", "1").is_none());
        assert!(rate("USD", "0").is_none());
        assert!(rate("USD", "-1").is_none());
        assert!(rate("USD", "abc").is_none());
        assert!(rate("US", "0.01").is_none());
    }
}
