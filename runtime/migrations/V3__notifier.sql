-- Outbound webhooks (the notifier): endpoints, rule state, the events that fired, and the
-- delivery outbox with every attempt.

CREATE TABLE webhook_endpoints (
    id                         uuid PRIMARY KEY,
    product_id                 uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    url                        text NOT NULL,
    -- Exact types (`conversation.rating`) or prefixes (`conversation.*`, `*`).
    event_types                text[] NOT NULL CHECK (cardinality(event_types) > 0),
    enabled                    boolean NOT NULL DEFAULT true,
    disabled_reason            text,
    -- Signing needs the key itself, so it cannot be hashed; it is never logged or printed
    -- after creation and rotation.
    secret                     text NOT NULL,
    -- After a rotation the previous secret keeps signing alongside the new one until this time.
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    -- Set by the first failure after a success; an endpoint failing for 5 days is disabled.
    failing_since              timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_product ON webhook_endpoints (product_id) WHERE enabled;

-- Whether each threshold rule is breached, per product, entity and event type: a threshold
-- fires on the crossing only, across restarts and replays.
CREATE TABLE notifier_rule_state (
    product_id  uuid NOT NULL,
    entity      text NOT NULL,
    event_type  text NOT NULL,
    breached    boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, entity, event_type)
);

-- One row per webhook event; the id is derived from what caused it, so a replayed signal or
-- conversation message finds its event already there and fires nothing new.
CREATE TABLE webhook_events (
    id          uuid PRIMARY KEY,
    product_id  uuid NOT NULL,
    event_type  text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The outbox: written in the same transaction as the rule state; one row per event and
-- endpoint, whose id is the delivery id every attempt carries.
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);

-- What the workers claim: each endpoint's oldest due deliveries.
CREATE INDEX deliveries_due ON deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at DESC);

CREATE TABLE delivery_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    latency_ms       integer NOT NULL,
    status_code      integer,
    -- `timeout`, `connect`, `blocked_address`, `http_status`, ... (none on success).
    error_class      text,
    error            text,
    -- At most 16 KiB of the answer.
    response_body    text,
    next_attempt_at  timestamptz
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);
