-- Users, organizations, conversations and the business events tied to them (the attributor).

CREATE TABLE organizations (
    id                       uuid PRIMARY KEY,
    product_id               uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    external_organization_id text NOT NULL,
    name                     text,
    -- created_from / source say who created the row ('analytics' + 'amplitude'|'segment').
    properties               jsonb NOT NULL DEFAULT '{}',
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, external_organization_id)
);

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    product_id       uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    external_user_id text,
    email            text,
    -- Matching is on the trimmed, lower-cased address.
    email_key        text GENERATED ALWAYS AS (lower(btrim(email))) STORED,
    name             text,
    organization_id  uuid REFERENCES organizations (id) ON DELETE SET NULL,
    properties       jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One user per external id and per address in a product: concurrent first events of one new
-- user meet here and create exactly one row.
CREATE UNIQUE INDEX users_external_id ON users (product_id, external_user_id)
    WHERE external_user_id IS NOT NULL;
CREATE UNIQUE INDEX users_email ON users (product_id, email_key)
    WHERE email_key IS NOT NULL AND email_key <> '';

CREATE TABLE conversations (
    id                       uuid PRIMARY KEY,
    product_id               uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    external_conversation_id text NOT NULL,
    user_id                  uuid REFERENCES users (id) ON DELETE SET NULL,
    started_at               timestamptz,
    ended_at                 timestamptz,
    last_activity_at         timestamptz,
    -- 'sdk' when the conversation stream delivered it first, 'analytics' when an event named it.
    created_from             text NOT NULL CHECK (created_from IN ('sdk', 'analytics')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, external_conversation_id)
);

-- Every conversation message with its time: the 15-minute window is decided by event time
-- against this history, so a replay attributes the same way whatever arrived since.
CREATE TABLE conversation_activity (
    message_id      uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    product_id      uuid NOT NULL,
    user_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    kind            text NOT NULL CHECK (kind IN ('started', 'message', 'ended')),
    occurred_at     timestamptz NOT NULL
);

CREATE INDEX conversation_activity_window
    ON conversation_activity (product_id, user_id, occurred_at DESC);
CREATE INDEX conversation_activity_conversation ON conversation_activity (conversation_id);

-- The id is derived from (product_id, insert_id) (UUIDv5, see `CanonicalEvent::derive_id`) and the
-- attributor refuses an event whose id does not match, so the primary key is the uniqueness of
-- (product, insert id) at the cost of one index instead of two.
CREATE TABLE business_events (
    id                         uuid PRIMARY KEY,
    -- No foreign keys on this, the busiest table: a check per reference per row would cost more
    -- than the insert itself. The attributor checks products before writing and writes the links
    -- from rows it read or wrote in the same transaction.
    product_id                 uuid NOT NULL,
    connection_id              uuid NOT NULL,
    insert_id                  text NOT NULL,
    source                     text NOT NULL,
    event_type                 text NOT NULL,
    event_at                   timestamptz NOT NULL,
    received_at                timestamptz NOT NULL,
    external_user_id           text,
    external_organization_id   text,
    external_conversation_id   text,
    value                      jsonb,
    value_type                 text,
    -- The value when it is a number, for sums.
    numeric_value              double precision,
    influence                  text NOT NULL CHECK (influence IN ('positive', 'negative', 'neutral')),
    influence_rule             text NOT NULL,
    quality_impact_score       double precision,
    properties                 jsonb NOT NULL,
    user_hints                 jsonb NOT NULL,
    organization_hints         jsonb NOT NULL,
    warnings                   jsonb NOT NULL,
    user_id                    uuid,
    organization_id            uuid,
    conversation_id            uuid,
    user_resolution            text NOT NULL,
    organization_resolution    text NOT NULL,
    conversation_resolution    text NOT NULL,
    mapper_version             integer NOT NULL,
    raw_topic                  text NOT NULL,
    raw_partition              integer NOT NULL,
    raw_offset                 bigint NOT NULL,
    raw_index                  integer NOT NULL,
    attributed_at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX business_events_conversation ON business_events (conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX business_events_user ON business_events (user_id, event_at) WHERE user_id IS NOT NULL;

-- Kept in step with business_events in the same transaction, so analyses read it directly.
CREATE TABLE conversation_outcomes (
    conversation_id  uuid PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    product_id       uuid NOT NULL,
    events           integer NOT NULL DEFAULT 0,
    positive_events  integer NOT NULL DEFAULT 0,
    negative_events  integer NOT NULL DEFAULT 0,
    neutral_events   integer NOT NULL DEFAULT 0,
    -- Sums of numeric values (currency or numeric) by influence.
    positive_value   double precision NOT NULL DEFAULT 0,
    negative_value   double precision NOT NULL DEFAULT 0,
    neutral_value    double precision NOT NULL DEFAULT 0,
    total_value      double precision NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
