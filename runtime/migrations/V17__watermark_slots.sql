-- One watermark row per product and writer slot (the writing connection's backend pid, modulo
-- 64): a batch moves its own slot's row forward, so attributors writing one product's events do
-- not wait for each other's transactions on a single row. A product's watermark is the latest of
-- its rows.
ALTER TABLE product_watermarks ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE product_watermarks DROP CONSTRAINT product_watermarks_pkey;
ALTER TABLE product_watermarks ADD PRIMARY KEY (product_id, slot);
