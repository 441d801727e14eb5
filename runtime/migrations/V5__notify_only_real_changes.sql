-- A column trigger fires whenever the column is in the SET list, even when its value stays the
-- same. Recording ingest activity sets `status` (pending becomes active), so every activity flush
-- told every receiver to drop its cached credentials and verify with scrypt again. Notify only
-- when something authentication depends on really changed; pending and active both take events,
-- so the first events of a connection do not evict it either.
CREATE OR REPLACE FUNCTION gf_notify_connection_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_new jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    row_old jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
BEGIN
    IF TG_OP = 'UPDATE'
       AND (CASE WHEN OLD.status = 'pending' THEN 'active' ELSE OLD.status END,
            OLD.provider, OLD.product_id, OLD.token_lookup, OLD.token_hash, OLD.secret_hash)
           IS NOT DISTINCT FROM
           (CASE WHEN NEW.status = 'pending' THEN 'active' ELSE NEW.status END,
            NEW.provider, NEW.product_id, NEW.token_lookup, NEW.token_hash, NEW.secret_hash)
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
