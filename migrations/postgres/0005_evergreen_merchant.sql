-- Evergreen merchants, terminals, QR cards and items (docs/DECISIONS.md, "Evergreen: merchants,
-- terminals, QR cards, items"). Times are Unix milliseconds; amounts are minor units (BIGINT).

-- Where a merchant is listed on the map: the meta lat/lon of their latest register_merchant
-- that carried one. A listing is turned on only with a position.
ALTER TABLE merchants ADD COLUMN lat DOUBLE PRECISION;
ALTER TABLE merchants ADD COLUMN lon DOUBLE PRECISION;
-- suggested_merchants prefilters with a latitude band around the asked position.
CREATE INDEX merchants_listed_by_lat ON merchants (is_merchant, lat);

-- QR cards the server issued to merchants for distribution. A card is "not_registered" while
-- no user holds `qr:<code>` in user_external_ids, and becomes that user's card when
-- register_user names it.
CREATE TABLE qr_cards (
    code      TEXT PRIMARY KEY,
    issued_by TEXT NOT NULL REFERENCES users (id),
    issued_at BIGINT NOT NULL
);
CREATE INDEX qr_cards_by_issuer ON qr_cards (issued_by, issued_at);

-- A user's items (products) in EVG. Ids are server-assigned and never reused.
CREATE TABLE evergreen_items (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    description TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX evergreen_items_by_user ON evergreen_items (user_id, id);

-- One row per user who changed their items: every change of a user's items first writes this
-- row, which serialises concurrent changes of one user's list (the per-user count limit holds).
CREATE TABLE evergreen_item_lists (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
