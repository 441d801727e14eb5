-- Admin keys authorize the control-plane API and console. A key is `gfa_` + a public lookup +
-- `_` + a 256-bit secret; only the secret's SHA-256 is stored (a random 256-bit secret needs no
-- slow hash: there is nothing to guess from it).
CREATE TABLE admin_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    key_lookup   text NOT NULL UNIQUE,
    key_hash     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Who changed what, when: every change made through the CLI or the API.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject_id  uuid,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
