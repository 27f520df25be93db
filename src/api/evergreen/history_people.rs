//! search_users and suggested_payors.

use std::collections::HashMap;

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::super::{caller, EvgError, EvgJson, InvalidBody, Meta, MetaOnly, ResponseMeta};
use super::{iso, Person};
use crate::api::AppState;
use crate::store::evergreen_history::{self as store, Band, Seen};

/// Most results one `search_users` answers.
pub const SEARCH_RESULTS_MAX: i64 = 50;
/// Longest search query, in characters (after trimming).
pub const QUERY_CHARS_MAX: usize = 100;
/// Most recent payment partners `suggested_payors` answers.
pub const RECENT_MAX: i64 = 10;
/// Newest records of each kind (payments made, payments received, requests made, requests
/// received) looked at to find recent partners.
const RECENT_SCAN_MAX: i64 = 200;
/// Most nearby users `suggested_payors` answers.
pub const NEARBY_MAX: usize = 20;
/// How far "nearby" reaches, in meters.
pub const NEARBY_RADIUS_M: f64 = 5_000.0;
/// How recently a user must have been seen to be nearby, in milliseconds (a day).
pub const NEARBY_SEEN_WITHIN_MS: i64 = 24 * 60 * 60 * 1000;
/// Most recently seen users read from the store per search; the closest of them are
/// answered.
const NEARBY_SCAN_MAX: i64 = 500;
/// Mean Earth radius (meters), for haversine distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// search_users: find users by name.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchUsers {
    pub meta: Meta,
    /// 1 to 100 characters (after trimming), matched case-insensitively anywhere in names.
    pub query: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SearchAnswer {
    pub meta: ResponseMeta,
    /// At most 50: names starting with the query first, then by name.
    pub results: Vec<Person>,
}

/// `text` for a SQL `LIKE … ESCAPE '\'` pattern: its wildcards and the escape matched
/// literally.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Find active users by name: `query` (trimmed, 1 to 100 characters, else 400 `query`) is
/// matched case-insensitively anywhere in the name (`%` and `_` are ordinary characters).
/// Emails are not searched (that would let anyone test whether an address has an account)
/// and never shown. The caller is never among the results. At most 50 results: names that
/// start with the query first, then by name. Case-insensitivity is full Unicode on
/// PostgreSQL and ASCII-only on SQLite.
#[utoipa::path(
    tag = "evergreen",
    request_body = SearchUsers,
    responses(
        (status = 200, body = SearchAnswer, example = json!({
            "meta": {"status": "authorized"},
            "results": [
                {"name": "Dave Kammeyer", "user_id": "facebook:1234121232",
                 "image": "https://s3.aws.com/9583ksajka8493.jpg",
                 "positive_rating": 80, "negative_rating": 20},
                {"name": "Dave Johnson", "user_id": "qr:7xt6l1p23buno1cr"}
            ]
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "query", "msg": "must be 1 to 100 characters"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/search_users")]
pub async fn search_users(
    state: web::Data<AppState>,
    body: EvgJson<SearchUsers>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let query = body.query.trim();
    if query.is_empty() || query.chars().count() > QUERY_CHARS_MAX {
        return Err(EvgError::invalid(
            "query",
            format!("must be 1 to {QUERY_CHARS_MAX} characters"),
        ));
    }
    let needle = like_escaped(&query.to_lowercase());
    let found = store::search(
        &state.db,
        &me.user.id,
        &format!("%{needle}%"),
        &format!("{needle}%"),
        SEARCH_RESULTS_MAX,
    )
    .await?;
    Ok(HttpResponse::Ok().json(SearchAnswer {
        meta: ResponseMeta::authorized(),
        results: found.iter().map(Person::of).collect(),
    }))
}

/// suggested_payors: the caller's recent partners and the users near them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestedPayors {
    /// `meta.lat`/`meta.lon` (both or neither) is where to look; without them, where the
    /// caller was last seen.
    pub meta: Meta,
}

/// A user seen near the caller.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NearbyPerson {
    pub name: String,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Where the user was last seen.
    pub lat: f64,
    pub lon: f64,
    /// When (ISO 8601 UTC).
    pub last_seen: String,
    /// Meters from the caller, rounded (haversine).
    pub distance: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_rating: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_rating: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SuggestedAnswer {
    pub meta: ResponseMeta,
    /// Up to 10 users the caller most recently paid, was paid by, asked for a payment or was
    /// asked by; the most recent first. Always present, possibly empty.
    pub recent: Vec<Person>,
    /// Up to 20 users seen within 5 km in the last 24 hours, the closest first. Always
    /// present; empty when the caller's position is unknown.
    pub nearby: Vec<NearbyPerson>,
}

/// Great-circle distance in meters between two (lat, lon) points.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A box holding every point within `radius_m` of (lat, lon).
fn band(lat: f64, lon: f64, radius_m: f64) -> Band {
    let dlat = (radius_m / EARTH_RADIUS_M).to_degrees();
    let lat_min = (lat - dlat).max(-90.0);
    let lat_max = (lat + dlat).min(90.0);
    // The widest longitude span is at the band's most poleward latitude.
    let poleward = lat_min.abs().max(lat_max.abs());
    let cos = poleward.to_radians().cos();
    let everywhere = Band {
        lat_min,
        lat_max,
        lon_min: -180.0,
        lon_max: 180.0,
        lon_wraps: false,
    };
    if cos < 1e-9 {
        return everywhere;
    }
    let dlon = dlat / cos;
    if dlon >= 180.0 {
        return everywhere;
    }
    let (lon_min, lon_max) = (lon - dlon, lon + dlon);
    if lon_min < -180.0 {
        Band {
            lon_min: lon_min + 360.0,
            lon_max,
            lon_wraps: true,
            ..everywhere
        }
    } else if lon_max > 180.0 {
        Band {
            lon_min,
            lon_max: lon_max - 360.0,
            lon_wraps: true,
            ..everywhere
        }
    } else {
        Band {
            lon_min,
            lon_max,
            ..everywhere
        }
    }
}

/// The closest of the users seen around `here`, at most [`NEARBY_MAX`].
fn closest(here: (f64, f64), seen: Vec<Seen>) -> Vec<NearbyPerson> {
    let mut near: Vec<(f64, Seen)> = seen
        .into_iter()
        .map(|s| (distance_m(here, (s.lat, s.lon)), s))
        .filter(|(d, _)| *d <= NEARBY_RADIUS_M)
        .collect();
    near.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(b.1.seen_at.cmp(&a.1.seen_at))
            .then(a.1.profile.id.cmp(&b.1.profile.id))
    });
    near.truncate(NEARBY_MAX);
    near.into_iter()
        .map(|(distance, s)| {
            let person = Person::of(&s.profile);
            NearbyPerson {
                name: person.name,
                user_id: person.user_id,
                image: person.image,
                lat: s.lat,
                lon: s.lon,
                last_seen: iso(s.seen_at),
                distance: distance.round() as i64,
                positive_rating: person.positive_rating,
                negative_rating: person.negative_rating,
            }
        })
        .collect()
}

/// Suggested people to pay or ask: `recent` — up to 10 distinct active users the caller most
/// recently transacted with (payments and terminal payments either way, payment requests
/// either way, whatever their status), the most recent first; `nearby` — up to 20 active
/// users other than the caller whose last known position (the `meta.lat`/`meta.lon` of their
/// latest authenticated call) is within 5 km and at most 24 hours old, the closest first,
/// with `distance` in meters (haversine) and `last_seen`. The caller's position is this
/// call's `meta.lat`/`meta.lon` (both or neither: 400 otherwise), else where they were last
/// seen; unknown → `nearby` is empty. Both keys are always present.
#[utoipa::path(
    tag = "evergreen",
    request_body = SuggestedPayors,
    responses(
        (status = 200, body = SuggestedAnswer, example = json!({
            "meta": {"status": "authorized"},
            "recent": [{"name": "Dave Kammeyer", "user_id": "facebook:1234121232",
                        "positive_rating": 80, "negative_rating": 20}],
            "nearby": [{"name": "Agora Cafe", "user_id": "qr:7xt6l1p23buno1cr",
                        "lat": 50.23849284, "lon": 15.39482929,
                        "last_seen": "2013-03-21T14:20:33Z", "distance": 120}]
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "meta.lon", "msg": "required with meta.lat"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/suggested_payors")]
pub async fn suggested_payors(
    state: web::Data<AppState>,
    body: EvgJson<SuggestedPayors>,
) -> Result<HttpResponse, EvgError> {
    let meta = body.0.meta;
    let me = caller(&state, &meta).await?;
    let here = match (meta.lat, meta.lon) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        (Some(_), None) => return Err(EvgError::invalid("meta.lon", "required with meta.lat")),
        (None, Some(_)) => return Err(EvgError::invalid("meta.lat", "required with meta.lon")),
        (None, None) => None,
    };
    let partners =
        store::recent_partners(&state.db, &me.user.id, RECENT_SCAN_MAX, RECENT_MAX).await?;
    let ids: Vec<String> = partners.iter().map(|(id, _)| id.clone()).collect();
    let profiles: HashMap<String, _> = store::profiles(&state.db, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let recent = ids
        .iter()
        .filter_map(|id| profiles.get(id))
        .map(Person::of)
        .collect();
    let here = match here {
        Some(here) => Some(here),
        None => store::location_of(&state.db, &me.user.id).await?,
    };
    let nearby = match here {
        Some((lat, lon)) => {
            let since = crate::store::now_ms().saturating_sub(NEARBY_SEEN_WITHIN_MS);
            let seen = store::seen_in(
                &state.db,
                band(lat, lon, NEARBY_RADIUS_M),
                &me.user.id,
                since,
                NEARBY_SCAN_MAX,
            )
            .await?;
            closest((lat, lon), seen)
        }
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(SuggestedAnswer {
        meta: ResponseMeta::authorized(),
        recent,
        nearby,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_haversine_meters() {
        assert!(distance_m((50.0, 15.0), (50.0, 15.0)).abs() < 1e-6);
        // One degree of latitude is about 111.2 km.
        let degree = distance_m((0.0, 0.0), (1.0, 0.0));
        assert!((degree - 111_195.0).abs() < 10.0, "{degree}");
        // Across the antimeridian the short way round.
        let across = distance_m((0.0, 179.99), (0.0, -179.99));
        assert!(across < 2_300.0, "{across}");
    }

    #[test]
    fn bands_hold_the_circle_and_wrap_at_the_antimeridian() {
        let b = band(50.0, 15.0, 5_000.0);
        assert!(!b.lon_wraps);
        assert!(b.lat_min < 49.96 && b.lat_max > 50.04, "{b:?}");
        assert!(b.lon_min < 14.93 && b.lon_max > 15.07, "{b:?}");
        let east = band(0.0, 179.99, 5_000.0);
        assert!(
            east.lon_wraps && east.lon_min < 179.99 && east.lon_max > -180.0,
            "{east:?}"
        );
        let west = band(0.0, -179.99, 5_000.0);
        assert!(
            west.lon_wraps && west.lon_min < 180.0 && west.lon_max > -179.99,
            "{west:?}"
        );
        let pole = band(89.99, 0.0, 5_000.0);
        assert_eq!(
            (pole.lon_min, pole.lon_max, pole.lon_wraps),
            (-180.0, 180.0, false)
        );
        assert_eq!(pole.lat_max, 90.0);
    }

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_escaped("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(like_escaped("dave"), "dave");
    }
}
