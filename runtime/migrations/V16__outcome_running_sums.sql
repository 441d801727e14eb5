-- Exact running sums per conversation, so a conversation that only gained new events is brought
-- up to date from what it holds plus those events, instead of re-reading every event it has: the
-- cost of a batch no longer grows with the length of the conversations it touches. Sums are kept
-- in numeric (exact, so the result does not depend on the order events arrived in); the double
-- precision columns stay what the API and the topic show.
ALTER TABLE conversation_outcomes
    ADD COLUMN positive_sum numeric NOT NULL DEFAULT 0,
    ADD COLUMN negative_sum numeric NOT NULL DEFAULT 0,
    ADD COLUMN neutral_sum  numeric NOT NULL DEFAULT 0,
    ADD COLUMN total_sum    numeric NOT NULL DEFAULT 0,
    ADD COLUMN revenue_sum  numeric NOT NULL DEFAULT 0,
    ADD COLUMN refunds_sum  numeric NOT NULL DEFAULT 0,
    ADD COLUMN quality_sum  numeric NOT NULL DEFAULT 0,
    -- The event time of decided_by_event_id: a newer positive or negative event replaces it.
    ADD COLUMN decided_at   timestamptz,
    -- Whether the sums above are those of the conversation's stored events; rows written before
    -- this version are not, and are read whole the next time they are touched.
    ADD COLUMN sums_exact   boolean NOT NULL DEFAULT false;
