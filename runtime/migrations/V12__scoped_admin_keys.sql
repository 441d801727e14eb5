-- Scoped admin keys: a role (`admin` changes and reads, `read` only reads) and, optionally, the
-- products a key sees (NULL: every product). Keys made before this stay admin over every product.
ALTER TABLE admin_keys
    ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'read')),
    -- An array, not a join table: a key whose products all vanished must see nothing, never
    -- everything (an empty join would read as "no limit"). Empty and NULL-holding lists are
    -- refused for the same reason.
    ADD COLUMN product_ids uuid[] CHECK (
        product_ids IS NULL
        OR (cardinality(product_ids) > 0 AND array_position(product_ids, NULL) IS NULL)
    );

-- The default only filled the existing rows; a new key names its role.
ALTER TABLE admin_keys ALTER COLUMN role DROP DEFAULT;
