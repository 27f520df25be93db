-- Stays: listings with their calendar days, amenities and locale texts (property catalog);
-- reservations, their payments, payment records, disputes, payment customers and methods
-- (booking management); reviews and their aggregates (review system).
-- Times are Unix milliseconds (BIGINT). Money is minor units (BIGINT) beside its currency.
-- Days are ISO dates (TEXT 'YYYY-MM-DD'); reservations also carry their nights as day
-- numbers since 1970-01-01 (night_from inclusive, night_to exclusive) for the overlap fence.
-- Objects and lists the documents leave open (location, policies, photos) are JSON text.

CREATE TABLE listings (
    id                  TEXT PRIMARY KEY,
    host_id             TEXT NOT NULL REFERENCES users (id),
    title               TEXT NOT NULL,
    amenity_ids         TEXT NOT NULL,
    main_photo          TEXT,
    photos              TEXT NOT NULL,
    address             TEXT NOT NULL,
    price_per_night     BIGINT NOT NULL CHECK (price_per_night >= 0),
    -- The same price in major units, for range filters across currencies.
    price_major         DOUBLE PRECISION NOT NULL,
    currency            TEXT NOT NULL,
    description         TEXT NOT NULL,
    property_type       TEXT NOT NULL,
    location            TEXT NOT NULL,
    max_stay            BIGINT,
    min_stay            BIGINT,
    seasonal_pricing    TEXT,
    approval_type       TEXT NOT NULL,
    booking_policies    TEXT,
    cancellation_policy TEXT,
    languages_supported TEXT NOT NULL,
    house_rules         TEXT,
    is_published        BOOLEAN NOT NULL,
    -- A decimal string: exact.
    city_tax_percent    TEXT,
    is_active           BOOLEAN NOT NULL DEFAULT TRUE,
    record_version      BIGINT NOT NULL DEFAULT 1,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX listings_by_host ON listings (host_id);

-- One row per listing and day.
CREATE TABLE listing_calendars (
    id                    TEXT PRIMARY KEY,
    listing_id            TEXT NOT NULL REFERENCES listings (id),
    day                   TEXT NOT NULL,
    price_override        BIGINT,
    min_stay              BIGINT,
    booked_by             TEXT,
    -- The reservation holding this night, if any (not part of the documented record).
    reservation_id        TEXT,
    ical_url              TEXT,
    external_calendar_ids TEXT NOT NULL,
    is_available          BOOLEAN NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    record_version        BIGINT NOT NULL DEFAULT 1,
    owner_id              TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (listing_id, day)
);

CREATE TABLE listing_amenities (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    icon_url       TEXT,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    record_version BIGINT NOT NULL DEFAULT 1,
    owner_id       TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX listing_amenities_active_name ON listing_amenities (lower(name)) WHERE is_active;

CREATE TABLE listing_locale_texts (
    id                    TEXT PRIMARY KEY,
    listing_id            TEXT NOT NULL REFERENCES listings (id),
    language_code         TEXT NOT NULL,
    localized_title       TEXT NOT NULL,
    localized_description TEXT NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    record_version        BIGINT NOT NULL DEFAULT 1,
    owner_id              TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX listing_locale_texts_active_pair
    ON listing_locale_texts (listing_id, lower(language_code)) WHERE is_active;

CREATE TABLE reservations (
    id                           TEXT PRIMARY KEY,
    listing_id                   TEXT NOT NULL REFERENCES listings (id),
    host_id                      TEXT NOT NULL REFERENCES users (id),
    guest_id                     TEXT NOT NULL REFERENCES users (id),
    approval_type                TEXT NOT NULL,
    booking_status               TEXT NOT NULL,
    check_in                     TEXT NOT NULL,
    check_out                    TEXT NOT NULL,
    night_from                   BIGINT NOT NULL,
    night_to                     BIGINT NOT NULL CHECK (night_to > night_from),
    -- True while the reservation holds its nights (pending or confirmed).
    holds_nights                 BOOLEAN NOT NULL,
    currency                     TEXT NOT NULL,
    guest_count                  BIGINT NOT NULL,
    total_price                  BIGINT NOT NULL,
    ical_export_url              TEXT,
    ical_import_source           TEXT,
    dispute_status               TEXT NOT NULL,
    booking_policies_snapshot    TEXT NOT NULL,
    cancellation_policy_snapshot TEXT NOT NULL,
    payment_confirmation         TEXT NOT NULL,
    -- How it is paid once payment started: 'wallet' or 'card'; the wallet hold or the
    -- gateway payment behind it.
    payment_method               TEXT,
    payment_ref                  TEXT,
    is_active                    BOOLEAN NOT NULL DEFAULT TRUE,
    record_version               BIGINT NOT NULL DEFAULT 1,
    created_at                   BIGINT NOT NULL,
    updated_at                   BIGINT NOT NULL
);
CREATE INDEX reservations_by_listing ON reservations (listing_id, night_from);
CREATE INDEX reservations_by_guest ON reservations (guest_id);
CREATE INDEX reservations_by_host ON reservations (host_id);

-- The fence behind the calendar actor: two reservations holding nights of one listing never
-- overlap (PostgreSQL has an exclusion constraint for this; SQLite gets these triggers).
CREATE TRIGGER reservations_no_overlap_insert
BEFORE INSERT ON reservations
WHEN NEW.holds_nights AND EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.listing_id = NEW.listing_id AND r.holds_nights AND r.id <> NEW.id
      AND r.night_from < NEW.night_to AND NEW.night_from < r.night_to
)
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap');
END;

CREATE TRIGGER reservations_no_overlap_update
BEFORE UPDATE ON reservations
WHEN NEW.holds_nights AND EXISTS (
    SELECT 1 FROM reservations r
    WHERE r.listing_id = NEW.listing_id AND r.holds_nights AND r.id <> NEW.id
      AND r.night_from < NEW.night_to AND NEW.night_from < r.night_to
)
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap');
END;

-- Sys_reservationPayment: the payment life cycle of one reservation.
CREATE TABLE reservation_payments (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL,
    order_id       TEXT NOT NULL REFERENCES reservations (id),
    payment_id     TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    status_literal TEXT NOT NULL,
    redirect_url   TEXT,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    record_version BIGINT NOT NULL DEFAULT 1,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX reservation_payments_active_order ON reservation_payments (order_id) WHERE is_active;
CREATE INDEX reservation_payments_by_payment ON reservation_payments (payment_id);

-- Append-only: no update, no delete.
CREATE TABLE payment_records (
    id                 TEXT PRIMARY KEY,
    reservation_id     TEXT NOT NULL REFERENCES reservations (id),
    stripe_charge_id   TEXT,
    payout_amount_host BIGINT,
    payment_intent_id  TEXT NOT NULL,
    currency           TEXT NOT NULL,
    city_tax           BIGINT,
    refund_amount      BIGINT,
    amount_paid        BIGINT NOT NULL,
    payment_status     TEXT NOT NULL,
    platform_fee       BIGINT,
    payment_date       BIGINT,
    is_active          BOOLEAN NOT NULL DEFAULT TRUE,
    record_version     BIGINT NOT NULL DEFAULT 1,
    owner_id           TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX payment_records_by_reservation ON payment_records (reservation_id);

CREATE TABLE disputes (
    id                 TEXT PRIMARY KEY,
    reservation_id     TEXT NOT NULL REFERENCES reservations (id),
    raised_by          TEXT NOT NULL REFERENCES users (id),
    admin_id           TEXT,
    issue_type         TEXT NOT NULL,
    description        TEXT NOT NULL,
    related_payment_id TEXT,
    resolution_status  TEXT NOT NULL,
    reported_at        BIGINT NOT NULL,
    resolved_at        BIGINT,
    refund_approved    BOOLEAN,
    is_active          BOOLEAN NOT NULL DEFAULT TRUE,
    record_version     BIGINT NOT NULL DEFAULT 1,
    owner_id           TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX disputes_by_reservation ON disputes (reservation_id);

-- Sys_paymentCustomer: a user's customer record at a payment gateway.
CREATE TABLE payment_customers (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    customer_id    TEXT NOT NULL,
    platform       TEXT NOT NULL,
    is_active      BOOLEAN NOT NULL DEFAULT TRUE,
    record_version BIGINT NOT NULL DEFAULT 1,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (user_id, platform)
);

-- Sys_paymentMethod: a gateway's payment method of a user; card_info holds brand, last four
-- digits and expiry only, never a card number.
CREATE TABLE payment_methods (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    payment_method_id TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    card_holder_name  TEXT,
    card_holder_zip   TEXT,
    platform          TEXT NOT NULL,
    card_info         TEXT NOT NULL,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    record_version    BIGINT NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (user_id, platform, payment_method_id)
);

CREATE TABLE reviews (
    id                    TEXT PRIMARY KEY,
    reservation_id        TEXT NOT NULL REFERENCES reservations (id),
    reviewer_id           TEXT NOT NULL REFERENCES users (id),
    reviewee_id           TEXT NOT NULL,
    reviewee_type         TEXT NOT NULL,
    rating                BIGINT NOT NULL,
    review_text           TEXT NOT NULL,
    moderation_status     TEXT NOT NULL,
    is_published          BOOLEAN NOT NULL,
    blind_submission_code TEXT NOT NULL,
    submitted_at          BIGINT NOT NULL,
    -- When the double-blind window closes and the review is published regardless.
    publish_at            BIGINT NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    record_version        BIGINT NOT NULL DEFAULT 1,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX reviews_once ON reviews (reservation_id, reviewer_id, reviewee_type) WHERE is_active;
CREATE INDEX reviews_by_reviewee ON reviews (reviewee_id, reviewee_type);
CREATE INDEX reviews_unpublished ON reviews (publish_at) WHERE NOT is_published;

CREATE TABLE review_aggregates (
    id                TEXT PRIMARY KEY,
    reviewee_id       TEXT NOT NULL,
    reviewee_type     TEXT NOT NULL,
    average_rating    DOUBLE PRECISION NOT NULL,
    review_count      BIGINT NOT NULL,
    visibility_status TEXT NOT NULL,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    record_version    BIGINT NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (reviewee_id, reviewee_type)
);
