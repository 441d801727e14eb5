-- Since V7 every external id and e-mail key that names a user is a row of user_identities, whose
-- key makes it name one user per product, and every new user records its own in the same
-- transaction. These two indexes said the same thing a second time: each new user paid for
-- three index entries and a speculative insertion here, and nothing reads users through them.
DROP INDEX users_external_id;
DROP INDEX users_email;
