//! `bookings`: guests race for the nights of a few hot listings over REST. Each attempt asks
//! for a random stay (a check-in within a window of days from tomorrow, 1 to N nights) of a
//! random listing; the node books it (201) or refuses it because a night is taken (409
//! `errMsg_datesNotAvailable`). Afterwards, for every listing: the accepted stays never
//! overlap, the listing holds exactly the accepted reservations, and its calendar's booked
//! nights are exactly the union of their nights.
//!
//! The attempt stream is a pure function of `--seed` and the attempt number, so
//! `reference-bookings` makes the very same attempts against PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::client::{Listing, Rest, User};
use crate::report::Report;
use crate::scenarios::Common;
use crate::stats::{self, Recorder};
use crate::{progress, setup};

/// The node's longest stay.
const STAY_NIGHTS_MAX: u32 = 365;
/// The price of a night, in whole USD: the total of a stay is this times its nights.
const PRICE_PER_NIGHT: u64 = 100;
/// Rows per page when reading reservations and calendar days back (the node's maximum).
const PAGE_ROWS: usize = 100;
/// How many distinct error texts a report lists.
const ERRORS_LISTED_MAX: usize = 5;

/// What shapes the attempts; shared with `reference-bookings`, so both make the same ones.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Hot listings, each of its own host.
    #[arg(long, default_value_t = 5)]
    pub listings: usize,
    /// Guests making attempts.
    #[arg(long, default_value_t = 64)]
    pub guests: usize,
    /// Attempts each guest makes.
    #[arg(long, default_value_t = 100)]
    pub attempts_per_guest: u64,
    /// Attempts in flight per guest (guests × this in all, as `reference-bookings`'s `--pool`
    /// allows).
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,
    /// Check-ins fall on one of this many days, from tomorrow (UTC) on.
    #[arg(long, default_value_t = 180)]
    pub days: u32,
    /// The longest stay asked for, in nights (each attempt: 1 to this many).
    #[arg(long, default_value_t = 7)]
    pub max_nights: u32,
    /// Seed of the attempt stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop attempting after this long, whatever is left.
    #[arg(long, default_value_t = 120)]
    pub max_secs: u64,
}

impl StreamArgs {
    pub fn smoke(&mut self) {
        self.listings = 2;
        self.guests = 8;
        self.attempts_per_guest = 10;
        self.in_flight = 2;
        self.days = 14;
        self.max_nights = 4;
        self.max_secs = 30;
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.listings == 0 || self.guests == 0 || self.in_flight == 0 {
            bail!("--listings, --guests and --in-flight must be at least 1");
        }
        if self.days == 0 || self.days > 3650 {
            bail!("--days must be 1 to 3650");
        }
        if self.max_nights == 0 || self.max_nights > STAY_NIGHTS_MAX {
            bail!("--max-nights must be 1 to {STAY_NIGHTS_MAX} (the node's longest stay)");
        }
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.attempts_per_guest.saturating_mul(self.guests as u64)
    }

    /// Attempts in flight in all.
    pub fn concurrency(&self) -> usize {
        self.guests.saturating_mul(self.in_flight)
    }

    pub fn params(&self, report: &mut Report) {
        report.param("listings", self.listings as u64);
        report.param("guests", self.guests as u64);
        report.param("attempts_per_guest", self.attempts_per_guest);
        report.param("in_flight_per_guest", self.in_flight as u64);
        report.param("window_days", u64::from(self.days));
        report.param("max_nights", u64::from(self.max_nights));
        report.param("seed", self.seed);
        report.param("max_secs", self.max_secs);
    }
}

/// One attempt: who asks for which listing, from which night of the window, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub guest: usize,
    pub listing: usize,
    /// Days after the window's first night.
    pub offset: u32,
    pub nights: u32,
}

/// Attempt number `k` of the stream: guest `k mod guests` (so each guest makes its share),
/// the rest drawn from a generator seeded by the seed and `k` alone, so that the same attempt
/// comes out whichever worker makes it and in whichever order.
pub fn attempt(stream: &StreamArgs, k: u64) -> Attempt {
    let mut rng = rand::rngs::StdRng::seed_from_u64(splitmix64(stream.seed ^ splitmix64(k)));
    Attempt {
        guest: (k % stream.guests.max(1) as u64) as usize,
        listing: rng.gen_range(0..stream.listings.max(1)),
        offset: rng.gen_range(0..stream.days.max(1)),
        nights: rng.gen_range(1..=stream.max_nights.max(1)),
    }
}

/// SplitMix64's finaliser: spreads nearby numbers (attempt 1, 2, 3…) far apart.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The window's first night: tomorrow in UTC, so that no attempt is in the past even when
/// the run crosses midnight (the node refuses check-ins before its today).
pub fn first_night() -> NaiveDate {
    let today = chrono::Utc::now().date_naive();
    today.checked_add_days(Days::new(1)).unwrap_or(today)
}

/// A stay's check-in and check-out (the morning after its last night).
pub fn dates(first: NaiveDate, a: &Attempt) -> (NaiveDate, NaiveDate) {
    let check_in = first
        .checked_add_days(Days::new(u64::from(a.offset)))
        .unwrap_or(first);
    let check_out = check_in
        .checked_add_days(Days::new(u64::from(a.nights)))
        .unwrap_or(check_in);
    (check_in, check_out)
}

/// An accepted stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    pub id: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
}

impl Stay {
    pub fn nights(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.check_in
            .iter_days()
            .take_while(move |d| *d < self.check_out)
    }
}

/// Pairs of stays (by id) that share a night. Check-out day is free: a stay ending on the
/// 5th and one starting on the 5th do not overlap.
pub fn overlapping_pairs(stays: &[Stay]) -> Vec<(String, String)> {
    let mut sorted: Vec<&Stay> = stays.iter().collect();
    sorted.sort_by(|a, b| (a.check_in, &a.id).cmp(&(b.check_in, &b.id)));
    let mut pairs = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        // Sorted by check-in: every later stay that starts before `a` ends overlaps it.
        for b in sorted[i + 1..]
            .iter()
            .take_while(|b| b.check_in < a.check_out)
        {
            pairs.push((a.id.clone(), b.id.clone()));
        }
    }
    pairs
}

/// Every night some stay holds.
pub fn union_of_nights(stays: &[Stay]) -> BTreeSet<NaiveDate> {
    stays.iter().flat_map(Stay::nights).collect()
}

/// Nights in one set and not the other, both ways: (only in `a`, only in `b`).
pub fn night_differences(
    a: &BTreeSet<NaiveDate>,
    b: &BTreeSet<NaiveDate>,
) -> (Vec<NaiveDate>, Vec<NaiveDate>) {
    (
        a.difference(b).copied().collect(),
        b.difference(a).copied().collect(),
    )
}

/// What the workers saw, all together.
#[derive(Debug, Default)]
pub struct Tally {
    pub attempts: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: BTreeMap<String, u64>,
    /// Accepted stays by listing index.
    pub stays: BTreeMap<usize, Vec<Stay>>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (listing, stays) in other.stays {
            self.stays.entry(listing).or_default().extend(stays);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The most frequent error texts, for a check's detail.
    pub fn errors_listed(&self) -> String {
        if self.errors.is_empty() {
            return "none".to_owned();
        }
        let mut errors: Vec<(&String, &u64)> = self.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        errors
            .iter()
            .take(ERRORS_LISTED_MAX)
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The three latency histograms both scenarios keep.
pub struct Latencies {
    pub all: Arc<std::sync::Mutex<stats::Latencies>>,
    pub accepted: Arc<std::sync::Mutex<stats::Latencies>>,
    pub rejected: Arc<std::sync::Mutex<stats::Latencies>>,
}

impl Latencies {
    pub fn new() -> Self {
        Latencies {
            all: stats::shared(),
            accepted: stats::shared(),
            rejected: stats::shared(),
        }
    }

    pub fn recorders(&self) -> [Recorder; 3] {
        [
            Recorder::new(&self.all),
            Recorder::new(&self.accepted),
            Recorder::new(&self.rejected),
        ]
    }

    pub fn push_into(&self, report: &mut Report, what: &str) {
        report.latencies.push(stats::summary_of(
            &self.all,
            &format!("{what} (any answer)"),
        ));
        report.latencies.push(stats::summary_of(
            &self.accepted,
            &format!("{what} accepted"),
        ));
        report.latencies.push(stats::summary_of(
            &self.rejected,
            &format!("{what} rejected"),
        ));
    }
}

/// The throughput metrics both scenarios report.
pub fn push_rates(report: &mut Report, tally: &Tally, elapsed: Duration) {
    report.metric("attempts", tally.attempts as f64, "attempts");
    report.metric(
        "attempts_per_sec",
        stats::rate(tally.attempts, elapsed),
        "1/s",
    );
    report.metric("accepted", tally.accepted as f64, "reservations");
    report.metric(
        "accepted_per_sec",
        stats::rate(tally.accepted, elapsed),
        "1/s",
    );
    report.metric("rejected", tally.rejected as f64, "attempts");
    report.metric("errors", tally.error_count() as f64, "attempts");
}

/// The overlap check both scenarios make, over every listing's accepted stays.
pub fn check_overlaps(report: &mut Report, stays: &BTreeMap<usize, Vec<Stay>>) -> u64 {
    let mut overlaps = 0u64;
    let mut examples = Vec::new();
    for (listing, stays) in stays {
        for (a, b) in overlapping_pairs(stays) {
            overlaps += 1;
            if examples.len() < ERRORS_LISTED_MAX {
                examples.push(format!("listing {listing}: {a} and {b}"));
            }
        }
    }
    report.metric("overlaps", overlaps as f64, "pairs");
    let stays_n: usize = stays.values().map(Vec::len).sum();
    report.check(
        "no two accepted stays of a listing share a night",
        overlaps == 0,
        if overlaps == 0 {
            format!("{stays_n} accepted stays over {} listings", stays.len())
        } else {
            format!("{overlaps} overlapping pairs: {}", examples.join("; "))
        },
    );
    overlaps
}

pub async fn run(common: &Common, mut stream: StreamArgs) -> anyhow::Result<Report> {
    if common.smoke {
        stream.smoke();
    }
    stream.validate()?;
    let mut report = Report::new("bookings");
    stream.params(&mut report);
    report.param("concurrency", stream.concurrency() as u64);

    let rest = Rest::new(&common.target)?;
    rest.health().await?;
    let prefix = crate::client::run_prefix();
    let hosts = setup::users(
        &rest,
        stream.listings,
        &format!("{prefix}-h"),
        common.setup_concurrency,
    )
    .await?;
    let guests = setup::users(
        &rest,
        stream.guests,
        &format!("{prefix}-g"),
        common.setup_concurrency,
    )
    .await?;
    let listings = setup::each(hosts.len(), common.setup_concurrency, "listings", |i| {
        let (rest, host) = (rest.clone(), hosts[i].clone());
        let title = format!("{prefix} hot listing {i}");
        async move { rest.listing(&host, &title, PRICE_PER_NIGHT).await }
    })
    .await?;

    let first = first_night();
    report.param("first_night", first.to_string());
    let total = stream.total();
    let next = Arc::new(AtomicU64::new(0));
    let latencies = Latencies::new();
    let bar = progress::bar(total, "attempts");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(stream.max_secs);
    let (listings, guests) = (Arc::new(listings), Arc::new(guests));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..stream.concurrency() {
        let ctx = WorkerCtx {
            rest: rest.clone(),
            stream: stream.clone(),
            listings: Arc::clone(&listings),
            guests: Arc::clone(&guests),
            next: Arc::clone(&next),
            recorders: latencies.recorders(),
            bar: bar.clone(),
            first,
            total,
            deadline,
        };
        workers.spawn(worker(ctx));
    }
    let mut tally = Tally::default();
    let mut last_answer = started;
    while let Some(joined) = workers.join_next().await {
        let (part, last) = joined.context("a booking worker panicked")?;
        tally.add(part);
        last_answer = last_answer.max(last);
    }
    let elapsed = last_answer.saturating_duration_since(started);
    bar.finish_and_clear();

    push_rates(&mut report, &tally, elapsed);
    latencies.push_into(&mut report, "reservation");
    report.check(
        "every attempt answered 201 or 409 (night taken)",
        tally.error_count() == 0,
        format!(
            "{} attempts: {} accepted, {} rejected; errors: {}",
            tally.attempts,
            tally.accepted,
            tally.rejected,
            tally.errors_listed()
        ),
    );

    // What the node holds, listing by listing, against what it answered.
    let held = setup::each(listings.len(), common.setup_concurrency, "verify", |i| {
        let (rest, listing, host) = (rest.clone(), listings[i].clone(), hosts[i].clone());
        async move { read_back(&rest, &listing, &host).await }
    })
    .await?;
    let mut all_stays: BTreeMap<usize, Vec<Stay>> = BTreeMap::new();
    let (mut missing, mut unexpected) = (Vec::new(), Vec::new());
    let (mut nights_not_booked, mut nights_booked_extra) = (0usize, 0usize);
    let mut night_examples = Vec::new();
    let mut booked_nights = 0usize;
    for (i, (listed, calendar)) in held.into_iter().enumerate() {
        let mut stays = tally.stays.get(&i).cloned().unwrap_or_default();
        let accepted_ids: BTreeSet<String> = stays.iter().map(|s| s.id.clone()).collect();
        let listed_ids: BTreeSet<String> = listed.iter().map(|s| s.id.clone()).collect();
        missing.extend(
            accepted_ids
                .difference(&listed_ids)
                .map(|id| format!("listing {i}: {id}")),
        );
        unexpected.extend(
            listed_ids
                .difference(&accepted_ids)
                .map(|id| format!("listing {i}: {id}")),
        );
        let (not_booked, extra) = night_differences(&union_of_nights(&stays), &calendar);
        nights_not_booked += not_booked.len();
        nights_booked_extra += extra.len();
        for night in not_booked.iter().take(ERRORS_LISTED_MAX) {
            night_examples.push(format!("listing {i}: {night} accepted, not booked"));
        }
        for night in extra.iter().take(ERRORS_LISTED_MAX) {
            night_examples.push(format!("listing {i}: {night} booked, not accepted"));
        }
        booked_nights += calendar.len();
        // The overlap check covers every stay either side knows of: the accepted ones and
        // any the node lists that were never answered as accepted.
        stays.extend(listed.into_iter().filter(|s| !accepted_ids.contains(&s.id)));
        all_stays.insert(i, stays);
    }
    check_overlaps(&mut report, &all_stays);
    let reservation_mismatches = missing.len() + unexpected.len();
    report.metric(
        "reservation_mismatches",
        reservation_mismatches as f64,
        "reservations",
    );
    report.check(
        "each listing holds exactly the accepted reservations",
        reservation_mismatches == 0,
        format!(
            "{} accepted; accepted but not listed: {}; listed but never accepted: {}",
            tally.accepted,
            listed_or_none(&missing),
            listed_or_none(&unexpected)
        ),
    );
    let calendar_mismatches = nights_not_booked + nights_booked_extra;
    report.metric("nights_booked", booked_nights as f64, "nights");
    report.metric("calendar_mismatches", calendar_mismatches as f64, "nights");
    report.check(
        "each calendar's booked nights are the union of its accepted stays",
        calendar_mismatches == 0,
        if calendar_mismatches == 0 {
            format!(
                "{booked_nights} booked nights over {} listings",
                listings.len()
            )
        } else {
            format!(
                "{nights_not_booked} accepted nights not booked, {nights_booked_extra} booked \
                 nights of no accepted stay: {}",
                night_examples.join("; ")
            )
        },
    );
    report.elapsed_secs = elapsed.as_secs_f64();
    Ok(report)
}

fn listed_or_none(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = items
        .iter()
        .take(ERRORS_LISTED_MAX)
        .map(String::as_str)
        .collect();
    format!("{} ({})", items.len(), shown.join(", "))
}

struct WorkerCtx {
    rest: Rest,
    stream: StreamArgs,
    listings: Arc<Vec<Listing>>,
    guests: Arc<Vec<User>>,
    next: Arc<AtomicU64>,
    recorders: [Recorder; 3],
    bar: indicatif::ProgressBar,
    first: NaiveDate,
    total: u64,
    deadline: Instant,
}

/// Take attempt numbers until there are none left or the time is up; make each one.
async fn worker(ctx: WorkerCtx) -> (Tally, Instant) {
    let WorkerCtx {
        rest,
        stream,
        listings,
        guests,
        next,
        recorders,
        bar,
        first,
        total,
        deadline,
    } = ctx;
    let [mut all, mut accepted, mut rejected] = recorders;
    let mut tally = Tally::default();
    let mut last_answer = Instant::now();
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= total || Instant::now() >= deadline {
            break;
        }
        let a = attempt(&stream, k);
        let listing = &listings[a.listing];
        let (check_in, check_out) = dates(first, &a);
        let body = reservation_body(listing, check_in, check_out, a.nights);
        let begun = Instant::now();
        let answer = rest.reserve(&guests[a.guest], &body).await;
        let took = begun.elapsed();
        last_answer = Instant::now();
        tally.attempts += 1;
        bar.inc(1);
        match classify(answer, check_in, check_out) {
            Answer::Accepted(stay) => {
                all.record(took);
                accepted.record(took);
                tally.accepted += 1;
                tally.stays.entry(a.listing).or_default().push(stay);
            }
            Answer::Rejected => {
                all.record(took);
                rejected.record(took);
                tally.rejected += 1;
            }
            Answer::Error(text) => {
                *tally.errors.entry(text).or_default() += 1;
            }
        }
    }
    all.flush();
    accepted.flush();
    rejected.flush();
    (tally, last_answer)
}

/// The body of `createReservation` for one stay, priced as the node prices it.
pub fn reservation_body(
    listing: &Listing,
    check_in: NaiveDate,
    check_out: NaiveDate,
    nights: u32,
) -> Value {
    json!({
        "listingId": listing.id,
        "approvalType": "instant",
        "bookingStatus": "pending",
        "hostId": listing.host_id,
        "checkIn": check_in.to_string(),
        "checkOut": check_out.to_string(),
        "currency": "USD",
        "guestCount": 1,
        "totalPrice": listing.price_per_night * u64::from(nights),
        "disputeStatus": "none",
        "bookingPoliciesSnapshot": {},
        "cancellationPolicySnapshot": {},
    })
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted(Stay),
    /// 409 `errMsg_datesNotAvailable`: a night was taken.
    Rejected,
    Error(String),
}

/// Read the node's answer to one attempt. A 201 must carry the reservation's id and the
/// dates asked for; a 409 must say the dates are not available; anything else is an error.
pub fn classify(
    answer: anyhow::Result<(u16, Value)>,
    check_in: NaiveDate,
    check_out: NaiveDate,
) -> Answer {
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => return Answer::Error(format!("transport: {error:#}")),
    };
    match status {
        201 => {
            let r = &body["reservation"];
            let Some(id) = r["id"].as_str() else {
                return Answer::Error("201 without a reservation id".to_owned());
            };
            let (asked_in, asked_out) = (check_in.to_string(), check_out.to_string());
            if r["checkIn"].as_str() != Some(asked_in.as_str())
                || r["checkOut"].as_str() != Some(asked_out.as_str())
            {
                return Answer::Error(format!(
                    "201 for other dates: asked {asked_in}..{asked_out}, got {}..{}",
                    r["checkIn"], r["checkOut"]
                ));
            }
            Answer::Accepted(Stay {
                id: id.to_owned(),
                check_in,
                check_out,
            })
        }
        409 if body["message"] == "errMsg_datesNotAvailable" => Answer::Rejected,
        other => Answer::Error(format!(
            "HTTP {other} {}",
            body["message"].as_str().unwrap_or("(no message)")
        )),
    }
}

/// A listing's reservations (its host's view) and the nights its calendar has booked.
async fn read_back(
    rest: &Rest,
    listing: &Listing,
    host: &User,
) -> anyhow::Result<(Vec<Stay>, BTreeSet<NaiveDate>)> {
    let rows = all_pages(
        rest,
        "/bookingmanagement-api/v1/reservations",
        &listing.id,
        &host.token,
        "reservations",
    )
    .await?;
    let mut stays = Vec::new();
    for r in &rows {
        let field = |name: &str| {
            r[name]
                .as_str()
                .with_context(|| format!("a reservation without {name}: {r}"))
        };
        if r["listingId"].as_str() != Some(listing.id.as_str()) {
            bail!("asked for listing {}'s reservations, got {r}", listing.id);
        }
        stays.push(Stay {
            id: field("id")?.to_owned(),
            check_in: parse_day(field("checkIn")?)?,
            check_out: parse_day(field("checkOut")?)?,
        });
    }
    let days = all_pages(
        rest,
        "/propertycatalog-api/v1/listingcalendars",
        &listing.id,
        &host.token,
        "listingCalendars",
    )
    .await?;
    let mut booked = BTreeSet::new();
    for d in &days {
        if d["isActive"] == Value::Bool(true) && d["isAvailable"] == Value::Bool(false) {
            let date = d["date"]
                .as_str()
                .with_context(|| format!("a calendar day without a date: {d}"))?;
            booked.insert(parse_day(date)?);
        }
    }
    Ok((stays, booked))
}

pub fn parse_day(raw: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").with_context(|| format!("not a date: {raw:?}"))
}

/// Every row of a list route filtered by `listingId`, page by page (the routes order their
/// rows by a unique key, and nothing writes while this reads).
async fn all_pages(
    rest: &Rest,
    path: &str,
    listing_id: &str,
    token: &str,
    field: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for page in 1u64.. {
        let url = format!("{path}?listingId={listing_id}&pageNumber={page}&pageRowCount={PAGE_ROWS}&getJoins=false");
        let (status, body) = rest.get(&url, Some(token)).await?;
        if status != 200 {
            bail!("GET {url}: HTTP {status} {body}");
        }
        let Some(list) = body[field].as_array() else {
            bail!("GET {url}: no {field} list in {body}");
        };
        rows.extend(list.iter().cloned());
        if list.len() < PAGE_ROWS {
            break;
        }
    }
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_day(s).unwrap()
    }

    fn stay(id: &str, check_in: &str, check_out: &str) -> Stay {
        Stay {
            id: id.into(),
            check_in: day(check_in),
            check_out: day(check_out),
        }
    }

    fn stream() -> StreamArgs {
        StreamArgs {
            listings: 5,
            guests: 7,
            attempts_per_guest: 10,
            in_flight: 1,
            days: 30,
            max_nights: 4,
            seed: 9,
            max_secs: 10,
        }
    }

    #[test]
    fn the_attempt_stream_is_a_function_of_seed_and_number() {
        let s = stream();
        let first: Vec<Attempt> = (0..500).map(|k| attempt(&s, k)).collect();
        let again: Vec<Attempt> = (0..500).rev().map(|k| attempt(&s, k)).collect();
        assert!(first.iter().eq(again.iter().rev()));
        for (k, a) in first.iter().enumerate() {
            assert_eq!(a.guest, k % 7);
            assert!(
                a.listing < 5 && a.offset < 30 && (1..=4).contains(&a.nights),
                "{a:?}"
            );
        }
        // Every listing, offset and length comes up.
        for listing in 0..5 {
            assert!(first.iter().any(|a| a.listing == listing));
        }
        for nights in 1..=4 {
            assert!(first.iter().any(|a| a.nights == nights));
        }
        let other = StreamArgs { seed: 10, ..s };
        assert_ne!(
            first[..20],
            (0..20).map(|k| attempt(&other, k)).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn stays_run_from_check_in_to_the_morning_after_the_last_night() {
        let a = Attempt {
            guest: 0,
            listing: 0,
            offset: 3,
            nights: 2,
        };
        let (check_in, check_out) = dates(day("2030-12-30"), &a);
        assert_eq!(
            (check_in, check_out),
            (day("2031-01-02"), day("2031-01-04"))
        );
        let nights: Vec<NaiveDate> = stay("x", "2031-01-02", "2031-01-04").nights().collect();
        assert_eq!(nights, vec![day("2031-01-02"), day("2031-01-03")]);
        assert!(first_night() > chrono::Utc::now().date_naive());
    }

    #[test]
    fn overlaps_are_shared_nights_not_shared_changeover_days() {
        let clean = vec![
            stay("a", "2030-01-01", "2030-01-05"),
            stay("b", "2030-01-05", "2030-01-06"),
            stay("c", "2030-01-10", "2030-01-11"),
        ];
        assert!(overlapping_pairs(&clean).is_empty());
        let clash = vec![
            stay("c", "2030-01-10", "2030-01-11"),
            stay("a", "2030-01-01", "2030-01-05"),
            stay("b", "2030-01-04", "2030-01-06"),
            stay("d", "2030-01-02", "2030-01-03"),
        ];
        let pairs = overlapping_pairs(&clash);
        assert_eq!(
            pairs,
            vec![
                ("a".to_owned(), "d".to_owned()),
                ("a".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn the_union_of_nights_is_compared_both_ways() {
        let stays = vec![
            stay("a", "2030-01-01", "2030-01-03"),
            stay("b", "2030-01-03", "2030-01-04"),
        ];
        let union = union_of_nights(&stays);
        assert_eq!(union.len(), 3);
        let mut calendar = union.clone();
        assert_eq!(night_differences(&union, &calendar), (vec![], vec![]));
        calendar.remove(&day("2030-01-02"));
        calendar.insert(day("2030-01-09"));
        assert_eq!(
            night_differences(&union, &calendar),
            (vec![day("2030-01-02")], vec![day("2030-01-09")])
        );
    }

    #[test]
    fn answers_are_told_apart() {
        let (i, o) = (day("2030-01-01"), day("2030-01-03"));
        let created =
            json!({"reservation": {"id": "r1", "checkIn": "2030-01-01", "checkOut": "2030-01-03"}});
        assert_eq!(
            classify(Ok((201, created)), i, o),
            Answer::Accepted(stay("r1", "2030-01-01", "2030-01-03"))
        );
        let taken = json!({"message": "errMsg_datesNotAvailable"});
        assert_eq!(classify(Ok((409, taken)), i, o), Answer::Rejected);
        let other_409 = json!({"message": "errMsg_somethingElse"});
        assert!(matches!(
            classify(Ok((409, other_409)), i, o),
            Answer::Error(_)
        ));
        let moved =
            json!({"reservation": {"id": "r1", "checkIn": "2030-01-02", "checkOut": "2030-01-03"}});
        assert!(matches!(classify(Ok((201, moved)), i, o), Answer::Error(_)));
        assert!(matches!(
            classify(Ok((500, Value::Null)), i, o),
            Answer::Error(_)
        ));
        assert!(matches!(
            classify(Err(anyhow::anyhow!("reset")), i, o),
            Answer::Error(e) if e.starts_with("transport")
        ));
    }

    #[test]
    fn the_body_prices_the_stay_per_night() {
        let listing = Listing {
            id: "l".into(),
            host_id: "h".into(),
            price_per_night: 100,
        };
        let body = reservation_body(&listing, day("2030-01-01"), day("2030-01-04"), 3);
        assert_eq!(body["totalPrice"], 300);
        assert_eq!(body["checkOut"], "2030-01-04");
        assert_eq!(body["hostId"], "h");
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally {
            attempts: 3,
            accepted: 1,
            rejected: 1,
            ..Tally::default()
        };
        a.errors.insert("x".into(), 1);
        a.stays
            .insert(0, vec![stay("a", "2030-01-01", "2030-01-02")]);
        let mut b = Tally {
            attempts: 2,
            accepted: 1,
            rejected: 1,
            ..Tally::default()
        };
        b.stays
            .insert(0, vec![stay("b", "2030-01-02", "2030-01-03")]);
        a.add(b);
        assert_eq!(
            (a.attempts, a.accepted, a.rejected, a.error_count()),
            (5, 2, 2, 1)
        );
        assert_eq!(a.stays[&0].len(), 2);
        assert_eq!(a.errors_listed(), "1× x");
    }

    #[test]
    fn smoke_and_limits() {
        let mut s = stream();
        s.smoke();
        assert!(s.validate().is_ok());
        assert_eq!(s.total(), 80);
        assert!(StreamArgs {
            max_nights: 366,
            ..stream()
        }
        .validate()
        .is_err());
        assert!(StreamArgs {
            listings: 0,
            ..stream()
        }
        .validate()
        .is_err());
    }
}
