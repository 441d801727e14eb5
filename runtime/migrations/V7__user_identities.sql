-- A user is known by every external id and e-mail key that resolved to it in its product, not
-- only by the ones it was created with: otherwise the same events attribute differently
-- depending on which arrived first. Each (product, kind, value) names one user.
CREATE TABLE user_identities (
    product_id  uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('external_id', 'email')),
    value       text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, kind, value)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

INSERT INTO user_identities (product_id, kind, value, user_id)
SELECT product_id, 'external_id', external_user_id, id FROM users
 WHERE external_user_id IS NOT NULL AND btrim(external_user_id) <> ''
ON CONFLICT DO NOTHING;
INSERT INTO user_identities (product_id, kind, value, user_id)
SELECT product_id, 'email', email_key, id FROM users
 WHERE email_key IS NOT NULL AND email_key <> ''
ON CONFLICT DO NOTHING;

-- Late re-attribution finds the unattributed events of an external id, and the events of a user
-- after a conversation message, through these.
CREATE INDEX business_events_unattributed ON business_events (product_id, external_user_id)
    WHERE user_id IS NULL;
