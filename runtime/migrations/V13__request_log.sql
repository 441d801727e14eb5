-- What each connection was sent and answered, for its owner: the newest requests (kept bounded
-- by the receiver, 100 per connection) and hourly counts per answer status. Written off the
-- request path, once a second; never the token, a secret or a header value.
CREATE TABLE connection_requests (
    id            uuid PRIMARY KEY,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    product_id    uuid NOT NULL,
    at            timestamptz NOT NULL,
    method        text NOT NULL,
    status        smallint NOT NULL,
    received      integer NOT NULL,
    accepted      integer NOT NULL,
    dropped       integer NOT NULL,
    -- A refusal's machine-readable code and the message the sender was answered.
    error_code    text,
    error_message text,
    bytes         integer NOT NULL,
    -- Where the stored body is in the raw topic: its events carry the same origin.
    raw_partition integer,
    raw_offset    bigint
);

CREATE INDEX connection_requests_newest ON connection_requests (connection_id, at DESC, id DESC);

CREATE TABLE connection_hourly (
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    product_id    uuid NOT NULL,
    hour          timestamptz NOT NULL,
    status        smallint NOT NULL,
    requests      bigint NOT NULL,
    received      bigint NOT NULL,
    accepted      bigint NOT NULL,
    dropped       bigint NOT NULL,
    PRIMARY KEY (connection_id, hour, status)
);

CREATE INDEX connection_hourly_product ON connection_hourly (product_id, hour);

-- The events one stored request became (a request's raw record position).
CREATE INDEX business_events_origin ON business_events (raw_partition, raw_offset);
