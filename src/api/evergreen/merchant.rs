//! The Evergreen merchant flow: `register_merchant` and `suggested_merchants` (here),
//! `make_terminal_payment` (merchant_terminal.rs), QR cards — `qr_status` and
//! `issue_qr_cards` — (merchant_qr.rs) and `items` (merchant_items.rs).
//!
//! Decisions (docs/DECISIONS.md, "Evergreen: merchants, terminals, QR cards, items"):
//! - a *merchant* is a user whose listing is on (`register_merchant` with `is_merchant:
//!   "true"`); only merchants take terminal payments and are issued QR cards;
//! - the listing's position is the `meta.lat`/`meta.lon` of the latest `register_merchant`
//!   that carried one, and a listing cannot be turned on without one;
//! - QR card codes are 16 random lowercase hex characters, printed as
//!   `https://qr.evr.gr/<code>`; both forms are accepted wherever a card is named;
//! - calls that change something without a wallet command (`register_merchant`,
//!   `issue_qr_cards`, `items` changes) claim `meta.request_id` and store their answer in the
//!   transaction of their change.

#[path = "merchant_items.rs"]
mod items;
#[path = "merchant_qr.rs"]
mod qr;
#[path = "merchant_terminal.rs"]
mod terminal;

use std::borrow::Cow;
use std::collections::HashMap;

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_actix_web::scope::Scope;

use super::history::ratings;
use super::{
    abandon, caller, claim, evg_id, resolve_user, text, Claim, EvgError, EvgJson, InvalidBody,
    Meta, MetaOnly, ResponseMeta, TEXT_CHARS_MAX,
};
use crate::api::AppState;
use crate::store::evergreen_history;
use crate::store::evergreen_merchant::{self as store, Answer, Area, ListingChange};
use crate::wallets::fingerprint;

/// Register this file's routes.
pub fn routes<T>(scope: Scope<T>) -> Scope<T>
where
    T: actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Error = actix_web::Error,
        InitError = (),
    >,
{
    scope
        .service(register_merchant)
        .service(suggested_merchants)
        .service(terminal::make_terminal_payment)
        .service(qr::qr_status)
        .service(qr::issue_qr_cards)
        .service(items::items_call)
}

/// Longest listing description.
const DESCRIPTION_CHARS_MAX: usize = TEXT_CHARS_MAX;
/// Longest merchant type ("restaurant", "department store", …).
const TYPE_CHARS_MAX: usize = 40;
/// How many merchants `suggested_merchants` answers (the document: "the 20 closest").
const SUGGESTED_MERCHANTS_MAX: usize = 20;
/// Most listings read from the store per search radius: the search never holds more.
const CANDIDATES_MAX: i64 = 200;
/// The radii (meters) searched in turn until enough merchants are found; after the last one,
/// the whole map.
const SEARCH_RADII_M: [f64; 4] = [1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Mean Earth radius (meters), for haversine distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Longest Evergreen user id accepted in a body.
const USER_ID_CHARS_MAX: usize = 256;

/// How QR card codes are printed: this prefix and the code.
pub const QR_URL_PREFIX: &str = "https://qr.evr.gr/";

/// A QR card code from what a scanner read: the bare code or its `https://qr.evr.gr/<code>`
/// form.
pub fn qr_code_of(scanned: &str) -> &str {
    scanned.strip_prefix(QR_URL_PREFIX).unwrap_or(scanned)
}

/// An Evergreen user id with a card's URL form (`qr:https://qr.evr.gr/<code>`) reduced to the
/// stored form (`qr:<code>`).
pub fn canonical_user_id(evg_id: &str) -> Cow<'_, str> {
    match evg_id.strip_prefix("qr:") {
        Some(scanned) if scanned.starts_with(QR_URL_PREFIX) => {
            Cow::Owned(format!("qr:{}", qr_code_of(scanned)))
        }
        _ => Cow::Borrowed(evg_id),
    }
}

/// Check the shape of an Evergreen user id given in `path`: `facebook:`, `qr:` or `user:`
/// and something after it.
fn user_id_shape(path: &str, evg_id: &str) -> Result<(), EvgError> {
    let well_formed = evg_id.chars().count() <= USER_ID_CHARS_MAX
        && ["facebook:", "qr:", "user:"]
            .iter()
            .any(|p| evg_id.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if well_formed {
        Ok(())
    } else {
        Err(EvgError::invalid(
            path,
            format!(
                "must be facebook:<id>, qr:<code> or user:<id>, at most {USER_ID_CHARS_MAX} \
                 characters"
            ),
        ))
    }
}

/// Whether the user's merchant listing is on.
async fn is_merchant(state: &AppState, user_id: &str) -> Result<bool, EvgError> {
    Ok(crate::store::merchants::is_merchant(&state.db, user_id).await?)
}

/// A stored answer (without `meta`) as the HTTP answer: `meta` first, then its fields.
fn stored_answer(body: &serde_json::Value) -> HttpResponse {
    let mut answer = serde_json::Map::new();
    answer.insert(
        "meta".to_owned(),
        serde_json::to_value(ResponseMeta::authorized()).unwrap_or_default(),
    );
    if let Some(fields) = body.as_object() {
        answer.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    HttpResponse::Ok().json(answer)
}

/// 403 with the validation shape: the body names a user other than the caller.
fn forbidden(path: &str, msg: &str) -> HttpResponse {
    HttpResponse::Forbidden().json(InvalidBody {
        path: path.to_owned(),
        msg: msg.to_owned(),
    })
}

/// A merchant type: trimmed, lowercased, 1 to 40 letters, digits, spaces and hyphens; an empty
/// string means "none".
fn merchant_type(path: &str, raw: &str) -> Result<Option<String>, EvgError> {
    let kind = raw.trim().to_lowercase();
    if kind.is_empty() {
        return Ok(None);
    }
    let well_formed = kind.chars().count() <= TYPE_CHARS_MAX
        && kind
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '-');
    if well_formed {
        Ok(Some(kind))
    } else {
        Err(EvgError::invalid(
            path,
            format!("must be at most {TYPE_CHARS_MAX} letters, digits, spaces and hyphens"),
        ))
    }
}

/// Both coordinates or neither: `(lat_path, lat, lon_path, lon)`.
fn position(
    lat: (&str, Option<f64>),
    lon: (&str, Option<f64>),
) -> Result<Option<(f64, f64)>, EvgError> {
    match (lat.1, lon.1) {
        (Some(la), Some(lo)) => {
            if !(-90.0..=90.0).contains(&la) {
                return Err(EvgError::invalid(lat.0, "must be between -90 and 90"));
            }
            if !(-180.0..=180.0).contains(&lo) {
                return Err(EvgError::invalid(lon.0, "must be between -180 and 180"));
            }
            Ok(Some((la, lo)))
        }
        (Some(_), None) => Err(EvgError::invalid(lon.0, "required with the latitude")),
        (None, Some(_)) => Err(EvgError::invalid(lat.0, "required with the longitude")),
        (None, None) => Ok(None),
    }
}

/// register_merchant: turn the caller's merchant listing on or off and describe it.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMerchant {
    /// `meta.lat`/`meta.lon` are the listing's position (required to turn a listing on that
    /// has none yet; when sent, they move it).
    pub meta: Meta,
    /// Optional: the caller is the session's user. Another user's id is refused (403).
    #[serde(default)]
    pub user_id: Option<String>,
    /// `"true"` or `"false"` (strings, as the document shows; JSON booleans are refused).
    /// Turns the listing on the map on or off.
    pub is_merchant: String,
    /// At most 500 characters; omitted keeps the stored one, `""` clears it.
    #[serde(default)]
    pub description: Option<String>,
    /// The merchant's category ("restaurant", "cafe", "health", …): at most 40 letters,
    /// digits, spaces and hyphens, stored lowercase; omitted keeps it, `""` clears it.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MerchantRegistered {
    pub meta: ResponseMeta,
    /// `success` (refusals are 400/403).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Turn the caller's merchant listing on or off, and set its description, type and position.
///
/// The caller is the session's user: `user_id` may be sent (any of the caller's ids) but
/// naming anyone else is 403 `{"path":"user_id",…}`. `is_merchant` is the string `"true"` or
/// `"false"`. The listing's position is `meta.lat`/`meta.lon` (both or neither); turning a
/// listing on needs one, sent now or stored before (400 `meta.lat`). Omitted `description` and
/// `type` are kept; `""` clears them. Turning the listing off keeps everything and hides the
/// merchant from `suggested_merchants`; it also stops terminal payments and card issuing.
/// `account_info.is_merchant` shows the flag. Idempotent by `meta.request_id`.
#[utoipa::path(
    tag = "evergreen",
    request_body = RegisterMerchant,
    responses(
        (status = 200, body = MerchantRegistered, example = json!({"meta": {"status": "authorized"}, "status": "success"})),
        (status = 400, body = InvalidBody, example = json!({"path": "is_merchant", "msg": "must be \"true\" or \"false\""})),
        (status = 401, body = MetaOnly),
        (status = 403, body = InvalidBody, description = "user_id names another user"),
        (status = 409, body = MetaOnly, description = "the same request_id is being processed"),
    )
)]
#[post("/register_merchant")]
pub async fn register_merchant(
    state: web::Data<AppState>,
    body: EvgJson<RegisterMerchant>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let is_merchant = match body.is_merchant.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(EvgError::invalid(
                "is_merchant",
                "must be \"true\" or \"false\"",
            ))
        }
    };
    let description = match &body.description {
        Some(d) => {
            text("description", d, DESCRIPTION_CHARS_MAX)?;
            Some(Some(d.trim().to_owned()).filter(|d| !d.is_empty()))
        }
        None => None,
    };
    let kind = match &body.kind {
        Some(raw) => Some(merchant_type("type", raw)?),
        None => None,
    };
    let position = position(("meta.lat", body.meta.lat), ("meta.lon", body.meta.lon))?;
    if let Some(user_id) = &body.user_id {
        user_id_shape("user_id", user_id)?;
        let named = resolve_user(&state, &canonical_user_id(user_id)).await?;
        if named.as_deref() != Some(me.user.id.as_str()) {
            return Ok(forbidden(
                "user_id",
                "you can only change your own merchant listing",
            ));
        }
    }
    let stored = store::listing(&state.db, &me.user.id).await?;
    let has_position = stored
        .as_ref()
        .is_some_and(|l| l.lat.is_some() && l.lon.is_some());
    if is_merchant && position.is_none() && !has_position {
        return Err(EvgError::invalid(
            "meta.lat",
            "send meta.lat and meta.lon (the merchant's position) to turn the listing on",
        ));
    }
    // The position is not part of the fingerprint: a retry from a device that moved a little
    // is the same request, and gets the first answer.
    let scope = format!("merchant:{}", me.user.id);
    let print = fingerprint("register_merchant", &(is_merchant, &description, &kind));
    if let Claim::Answered(answer) = claim(&state, &scope, &body.meta, &print).await? {
        return Ok(stored_answer(&answer));
    }
    let answer = json!({"status": "success"});
    let change = ListingChange {
        is_merchant,
        description,
        kind,
        position,
    };
    let saved = store::save_listing(
        &state.db,
        &me.user.id,
        &change,
        Answer {
            scope: &scope,
            request_id: &body.meta.request_id,
        },
        &answer.to_string(),
    )
    .await;
    if let Err(error) = saved {
        abandon(&state, &scope, &body.meta).await;
        return Err(error.into());
    }
    tracing::info!(user_id = %me.user.id, is_merchant, "merchant listing changed");
    Ok(stored_answer(&answer))
}

/// suggested_merchants: the nearest listed merchants.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestedMerchants {
    /// `meta.lat`/`meta.lon` are used when `lat`/`lon` are not sent.
    pub meta: Meta,
    /// Where to search from (both or neither).
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    /// Only merchants of this type (case-insensitive).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SuggestedMerchant {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The merchant's Evergreen id (`facebook:…`, `qr:…` or `user:…`).
    pub user_id: String,
    /// Omitted when the merchant has no picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub lat: f64,
    pub lon: f64,
    /// Meters from the searched position (great-circle, rounded).
    pub distance: u64,
    /// Percent of the feedback the merchant received as payee that was positive (the rule of
    /// `suggested_payors` and `search_users`); omitted while they received none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_rating: Option<i64>,
    /// `100 - positive_rating`; omitted while they received none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_rating: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SuggestedMerchantsAnswer {
    pub meta: ResponseMeta,
    /// Nearest first, at most 20.
    pub merchants: Vec<SuggestedMerchant>,
}

/// Great-circle distance in meters.
fn haversine_m(from: (f64, f64), to: (f64, f64)) -> f64 {
    let (lat1, lat2) = (from.0.to_radians(), to.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (to.1 - from.1).to_radians();
    let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// The area holding every point within `radius_m` of `center` (and some corners beyond it).
/// `None` for the whole map.
fn area_around(center: (f64, f64), radius_m: Option<f64>) -> Area {
    let (lat, lon) = center;
    let lon_weight = lat.to_radians().cos().powi(2);
    let whole = Area {
        lat,
        lon,
        lat_min: -90.0,
        lat_max: 90.0,
        lon_half_width: 180.0,
        lon_weight,
    };
    let Some(radius) = radius_m else {
        return whole;
    };
    let dlat = (radius / EARTH_RADIUS_M).to_degrees();
    let (lat_min, lat_max) = (lat - dlat, lat + dlat);
    if lat_min <= -90.0 || lat_max >= 90.0 {
        // A pole is inside: every longitude.
        return Area {
            lat_min: lat_min.max(-90.0),
            lat_max: lat_max.min(90.0),
            ..whole
        };
    }
    // The widest longitude span is at the latitude farthest from the equator in the band.
    let widest = lat_min.abs().max(lat_max.abs()).to_radians().cos();
    let lon_half_width = (dlat / widest).min(180.0);
    Area {
        lat_min,
        lat_max,
        lon_half_width,
        ..whole
    }
}

/// The nearest listed merchants with their distances: search widening radii, each read capped
/// at [`CANDIDATES_MAX`], until one holds enough merchants within it.
async fn nearest(
    state: &AppState,
    center: (f64, f64),
    kind: Option<&str>,
    except: &str,
) -> Result<Vec<(store::Nearby, f64)>, EvgError> {
    let radii = SEARCH_RADII_M.iter().copied().map(Some).chain([None]);
    let mut found = Vec::new();
    for radius in radii {
        let area = area_around(center, radius);
        let candidates = store::nearby(&state.db, area, kind, except, CANDIDATES_MAX).await?;
        let capped = i64::try_from(candidates.len()).unwrap_or(i64::MAX) >= CANDIDATES_MAX;
        let mut measured: Vec<(store::Nearby, f64)> = candidates
            .into_iter()
            .map(|m| {
                let d = haversine_m(center, (m.lat, m.lon));
                (m, d)
            })
            .collect();
        measured.sort_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| a.0.user_id.cmp(&b.0.user_id))
        });
        // Anything outside the area is farther than `radius`: with enough merchants within it,
        // these are the nearest. A capped read (a dense area) is the best available answer.
        let within = radius.map_or(measured.len(), |r| {
            measured.iter().filter(|(_, d)| *d <= r).count()
        });
        found = measured;
        if within >= SUGGESTED_MERCHANTS_MAX || capped {
            break;
        }
    }
    found.truncate(SUGGESTED_MERCHANTS_MAX);
    Ok(found)
}

/// The 20 listed merchants nearest to `lat`/`lon` (or, when not sent, `meta.lat`/`meta.lon`;
/// with neither, 400 `lat`), optionally only of one `type`, nearest first, the caller
/// excluded. `distance` is the great-circle distance in meters, rounded; `image` and
/// `description`/`type` are omitted when the merchant has none; `positive_rating` and
/// `negative_rating` (percent of the feedback received as payee, summing to 100) are omitted
/// while the merchant has received none.
#[utoipa::path(
    tag = "evergreen",
    request_body = SuggestedMerchants,
    responses(
        (status = 200, body = SuggestedMerchantsAnswer, example = json!({
            "meta": {"status": "authorized"},
            "merchants": [{"name": "Agora Cafe", "description": "Cafe/Restaurant, open M-F 12-9pm",
                "type": "restaurant", "user_id": "facebook:2131212345", "lat": 50.23849284,
                "lon": 15.39482929, "distance": 120, "positive_rating": 95,
                "negative_rating": 5}]})),
        (status = 400, body = InvalidBody, example = json!({"path": "lat", "msg": "send lat and lon, or meta.lat and meta.lon"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/suggested_merchants")]
pub async fn suggested_merchants(
    state: web::Data<AppState>,
    body: EvgJson<SuggestedMerchants>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let center = match position(("lat", body.lat), ("lon", body.lon))? {
        Some(center) => center,
        None => position(("meta.lat", body.meta.lat), ("meta.lon", body.meta.lon))?.ok_or_else(
            || EvgError::invalid("lat", "send lat and lon, or meta.lat and meta.lon"),
        )?,
    };
    let kind = match &body.kind {
        Some(raw) => merchant_type("type", raw)?,
        None => None,
    };
    let found = nearest(&state, center, kind.as_deref(), &me.user.id).await?;
    let ids: Vec<String> = found.iter().map(|(m, _)| m.user_id.clone()).collect();
    let rated: HashMap<String, (i64, i64)> = evergreen_history::profiles(&state.db, &ids)
        .await?
        .into_iter()
        .filter_map(|p| {
            let rating = ratings(p.positive.unwrap_or(0), p.negative.unwrap_or(0))?;
            Some((p.id, rating))
        })
        .collect();
    let mut merchants = Vec::with_capacity(found.len());
    for (m, distance) in found {
        let rating = rated.get(&m.user_id).copied();
        merchants.push(SuggestedMerchant {
            name: m.name,
            description: m.description,
            kind: m.kind,
            user_id: evg_id(&state, &m.user_id).await?,
            image: m.image.filter(|i| !i.is_empty()),
            lat: m.lat,
            lon: m.lon,
            // Bounded by half the Earth's circumference: the cast cannot truncate.
            distance: distance.round().max(0.0) as u64,
            positive_rating: rating.map(|r| r.0),
            negative_rating: rating.map(|r| r.1),
        });
    }
    Ok(HttpResponse::Ok().json(SuggestedMerchantsAnswer {
        meta: ResponseMeta::authorized(),
        merchants,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        // One degree of latitude is about 111.2 km.
        let d = haversine_m((50.0, 15.0), (51.0, 15.0));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        // Across the antimeridian the short way round.
        let d = haversine_m((0.0, 179.5), (0.0, -179.5));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        assert!(haversine_m((10.0, 10.0), (10.0, 10.0)).abs() < 1e-6);
    }

    #[test]
    fn an_area_holds_every_point_within_its_radius() {
        for center in [
            (50.0, 15.0),
            (-33.9, 151.2),
            (0.0, 179.9),
            (89.5, 0.0),
            (-70.0, -179.0),
        ] {
            for radius in SEARCH_RADII_M {
                let area = area_around(center, Some(radius));
                for bearing in 0..36 {
                    // A point at exactly `radius` in this direction (spherical destination).
                    let theta = f64::from(bearing * 10).to_radians();
                    let delta = radius / EARTH_RADIUS_M;
                    let (lat1, lon1) = (center.0.to_radians(), center.1.to_radians());
                    let lat2 =
                        (lat1.sin() * delta.cos() + lat1.cos() * delta.sin() * theta.cos()).asin();
                    let lon2 = lon1
                        + (theta.sin() * delta.sin() * lat1.cos())
                            .atan2(delta.cos() - lat1.sin() * lat2.sin());
                    let (lat2, mut lon2) = (lat2.to_degrees(), lon2.to_degrees());
                    if lon2 > 180.0 {
                        lon2 -= 360.0;
                    }
                    if lon2 < -180.0 {
                        lon2 += 360.0;
                    }
                    let mut dlon = (lon2 - center.1).abs();
                    if dlon > 180.0 {
                        dlon = 360.0 - dlon;
                    }
                    assert!(
                        lat2 >= area.lat_min - 1e-9 && lat2 <= area.lat_max + 1e-9,
                        "{center:?} {radius} {bearing}"
                    );
                    assert!(
                        dlon <= area.lon_half_width + 1e-9,
                        "{center:?} {radius} {bearing}: {dlon} > {}",
                        area.lon_half_width
                    );
                }
            }
        }
    }

    #[test]
    fn card_ids_in_url_form_are_reduced() {
        assert_eq!(
            qr_code_of("https://qr.evr.gr/0123abcd0123abcd"),
            "0123abcd0123abcd"
        );
        assert_eq!(qr_code_of("0123abcd0123abcd"), "0123abcd0123abcd");
        assert_eq!(
            canonical_user_id("qr:https://qr.evr.gr/0123abcd0123abcd"),
            "qr:0123abcd0123abcd"
        );
        assert_eq!(canonical_user_id("facebook:1"), "facebook:1");
    }

    #[test]
    fn merchant_types_are_lowercase_and_bounded() {
        assert!(
            matches!(merchant_type("type", " Department Store "), Ok(Some(t)) if t == "department store")
        );
        assert!(matches!(merchant_type("type", ""), Ok(None)));
        assert!(merchant_type("type", "café;drop").is_err());
        assert!(merchant_type("type", &"a".repeat(41)).is_err());
    }
}
