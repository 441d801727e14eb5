-- Body excerpts in a connection's request log, only where its owner turned them on.
ALTER TABLE connections ADD COLUMN log_bodies boolean NOT NULL DEFAULT false;
ALTER TABLE connection_requests ADD COLUMN excerpt text;

-- Receivers cache whether a connection's bodies are logged: a change of it is told to them too.
CREATE OR REPLACE FUNCTION gf_notify_connection_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_new jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    row_old jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
BEGIN
    IF TG_OP = 'UPDATE'
       AND (CASE WHEN OLD.status = 'pending' THEN 'active' ELSE OLD.status END,
            OLD.provider, OLD.product_id, OLD.token_lookup, OLD.token_hash, OLD.secret_hash,
            OLD.log_bodies)
           IS NOT DISTINCT FROM
           (CASE WHEN NEW.status = 'pending' THEN 'active' ELSE NEW.status END,
            NEW.provider, NEW.product_id, NEW.token_lookup, NEW.token_hash, NEW.secret_hash,
            NEW.log_bodies)
    THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('gf_connection_changes', json_build_object(
        'op', lower(TG_OP),
        'id', coalesce(row_new ->> 'id', row_old ->> 'id'),
        'tokenLookup', row_new ->> 'token_lookup',
        'previousTokenLookup', row_old ->> 'token_lookup'
    )::text);
    RETURN NULL;
END;
$$;

DROP TRIGGER connections_notify_change ON connections;
CREATE TRIGGER connections_notify_change
AFTER INSERT OR DELETE OR UPDATE OF status, provider, product_id, token_lookup, token_hash, secret_hash,
    log_bodies
ON connections
FOR EACH ROW EXECUTE FUNCTION gf_notify_connection_change();
