//! The common query parameters of marketplace list routes (seed L246-263): paging, `getJoins`
//! and field filters, parsed once for every resource.

use std::collections::BTreeMap;

use actix_web::HttpRequest;

use super::envelope::Paging;
use super::MarketError;
use crate::store::conversations::{Filter, Page};

/// Rows per page when `pageRowCount` is not given.
pub const PAGE_ROWS_DEFAULT: u64 = 25;
/// The most rows a page may ask for; more is 400.
pub const PAGE_ROWS_MAX: u64 = 100;
/// `pageNumber=0` asks for every row: at most this many, else 400 (page through instead).
pub const ALL_ROWS_MAX: u64 = 1000;
/// The most values one filter may list.
const FILTER_VALUES_MAX: usize = 20;
/// The longest filter value.
const FILTER_VALUE_BYTES_MAX: usize = 256;

/// Parameters every marketplace route accepts and this node reads elsewhere or ignores:
/// the token, request tracking, and cache hints (the node reads committed state directly and
/// keeps no query cache, so `caching=false` is always in effect).
const ACCEPTED: &[&str] = &[
    "access_token",
    "requestId",
    "caching",
    "cacheTTL",
    "excludeCQRS",
];

/// A list request's paging, joins and filters.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// 0: every row (at most [`ALL_ROWS_MAX`]).
    pub page_number: u64,
    pub page_row_count: u64,
    pub get_joins: bool,
    /// Filter values by field name, as sent (`null` means "is null").
    pub filters: BTreeMap<String, Vec<String>>,
}

impl ListQuery {
    /// Parse the query string; `filters` names the fields this resource filters on.
    pub fn parse(req: &HttpRequest, filters: &[&str]) -> Result<ListQuery, MarketError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| MarketError::bad_request("errMsg_invalidQueryString", e.to_string()))?;
        let mut query = ListQuery {
            page_number: 1,
            page_row_count: PAGE_ROWS_DEFAULT,
            get_joins: true,
            filters: BTreeMap::new(),
        };
        for (name, value) in pairs {
            match name.as_str() {
                "pageNumber" => query.page_number = number(&name, &value, 0, u64::MAX / 2)?,
                "pageRowCount" => {
                    query.page_row_count = number(&name, &value, 1, PAGE_ROWS_MAX)?;
                }
                "getJoins" => query.get_joins = boolean(&name, &value)?,
                known if ACCEPTED.contains(&known) => {}
                field if filters.contains(&field) => {
                    if value.len() > FILTER_VALUE_BYTES_MAX {
                        return Err(MarketError::bad_request(
                            "errMsg_invalidFilter",
                            format!("{field}: at most {FILTER_VALUE_BYTES_MAX} bytes"),
                        ));
                    }
                    let values = query.filters.entry(field.to_owned()).or_default();
                    if values.len() >= FILTER_VALUES_MAX {
                        return Err(MarketError::bad_request(
                            "errMsg_invalidFilter",
                            format!("{field}: at most {FILTER_VALUES_MAX} values"),
                        ));
                    }
                    values.push(value);
                }
                other => {
                    return Err(MarketError::bad_request(
                        "errMsg_unknownQueryParameter",
                        format!("{other} is not a parameter of this route"),
                    ))
                }
            }
        }
        Ok(query)
    }

    /// The rows to read: one more than the page holds when every row is asked for, so that
    /// too many rows can be told apart from exactly the maximum.
    pub fn page(&self) -> Page {
        if self.page_number == 0 {
            return Page {
                offset: 0,
                limit: i64::try_from(ALL_ROWS_MAX + 1).unwrap_or(i64::MAX),
            };
        }
        let offset = (self.page_number - 1).saturating_mul(self.page_row_count);
        Page {
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            limit: i64::try_from(self.page_row_count).unwrap_or(i64::MAX),
        }
    }

    /// The `paging` block for `total` matching rows, or 400 when every row was asked for and
    /// there are more than [`ALL_ROWS_MAX`].
    pub fn paging(&self, total: i64) -> Result<Paging, MarketError> {
        let total = u64::try_from(total).unwrap_or_default();
        if self.page_number == 0 {
            if total > ALL_ROWS_MAX {
                return Err(MarketError::bad_request(
                    "errMsg_tooManyRowsForOnePage",
                    format!("{total} rows match; pageNumber=0 returns at most {ALL_ROWS_MAX}: page through them"),
                ));
            }
            return Ok(Paging {
                page_number: 0,
                page_row_count: total,
                total_row_count: total,
                page_count: u64::from(total > 0),
            });
        }
        Ok(Paging {
            page_number: self.page_number,
            page_row_count: self.page_row_count,
            total_row_count: total,
            page_count: total.div_ceil(self.page_row_count),
        })
    }

    /// Add the exact-match filters the request names: `(field, column)` pairs, several values
    /// of one field OR'd, `null` matching no value.
    pub fn filter_by(&self, filter: &mut Filter, columns: &[(&str, &str)]) {
        for (field, column) in columns {
            if let Some(values) = self.filters.get(*field) {
                filter.equals_any(column, values);
            }
        }
    }

    /// The values of a boolean filter: one of `true`/`false`.
    pub fn flag(&self, field: &str) -> Result<Option<bool>, MarketError> {
        match self.filters.get(field).map(Vec::as_slice) {
            None => Ok(None),
            Some([one]) => boolean(field, one).map(Some),
            Some(_) => Err(MarketError::bad_request(
                "errMsg_invalidFilter",
                format!("{field}: one value, true or false"),
            )),
        }
    }
}

fn number(name: &str, raw: &str, min: u64, max: u64) -> Result<u64, MarketError> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            MarketError::bad_request(
                "errMsg_invalidPaging",
                format!("{name} must be a whole number from {min} to {max}"),
            )
        })
}

fn boolean(name: &str, raw: &str) -> Result<bool, MarketError> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(MarketError::bad_request(
            "errMsg_invalidQueryParameter",
            format!("{name} must be true or false"),
        )),
    }
}
