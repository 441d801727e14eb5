-- The e-mail identity key is computed in one place, the attributor (Unicode whitespace trimmed,
-- Unicode case folding), and stored as written. A key PostgreSQL computed with lower() could
-- disagree with it (non-ASCII capitals under the C locale, final sigma, dotted I), and the
-- attributor then planned users the unique index refused, forever. Existing keys stay as they
-- were computed; new rows carry the attributor's.
ALTER TABLE users ALTER COLUMN email_key DROP EXPRESSION;
