-- Products and the connections that feed them.

CREATE TABLE products (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A connection is one ingest URL. Only scrypt hashes (PHC strings, parameters included) of the
-- token secret and of the optional shared secret are stored; token_lookup is the public part of
-- the token that finds the row.
CREATE TABLE connections (
    id              uuid PRIMARY KEY,
    product_id      uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    provider        text NOT NULL CHECK (provider IN ('amplitude', 'segment')),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'active', 'paused', 'disconnected')),
    token_lookup    text NOT NULL UNIQUE,
    token_hash      text NOT NULL,
    secret_hash     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz,
    first_event_at  timestamptz,
    last_event_at   timestamptz
);

CREATE INDEX connections_product_id ON connections (product_id);

-- Receivers cache what authentication needs; tell them at once when any of it changes, whoever
-- changed it. The payload names the connection and its token lookups, never a secret.
CREATE FUNCTION gf_notify_connection_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_new jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    row_old jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
BEGIN
    PERFORM pg_notify('gf_connection_changes', json_build_object(
        'op', lower(TG_OP),
        'id', coalesce(row_new ->> 'id', row_old ->> 'id'),
        'tokenLookup', row_new ->> 'token_lookup',
        'previousTokenLookup', row_old ->> 'token_lookup'
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER connections_notify_change
AFTER INSERT OR DELETE OR UPDATE OF status, provider, product_id, token_lookup, token_hash, secret_hash
ON connections
FOR EACH ROW EXECUTE FUNCTION gf_notify_connection_change();
