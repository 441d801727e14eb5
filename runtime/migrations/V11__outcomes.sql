-- The outcome layer: each conversation's outcome is recomputed from its events whenever they,
-- its activity, its user's later events or its product's event-time watermark change, so it is
-- exact and the same in any arrival order.
ALTER TABLE conversation_outcomes
    ADD COLUMN user_id uuid,
    ADD COLUMN verdict text NOT NULL DEFAULT 'open'
        CHECK (verdict IN ('converted', 'refunded', 'negative', 'churned_silently', 'open')),
    ADD COLUMN decided_by_event_id uuid,
    ADD COLUMN revenue double precision NOT NULL DEFAULT 0,
    ADD COLUMN refunds double precision NOT NULL DEFAULT 0,
    ADD COLUMN quality_impact double precision NOT NULL DEFAULT 0,
    ADD COLUMN first_event_at timestamptz,
    ADD COLUMN last_event_at timestamptz,
    -- The conversation's last message (null when only analytics events named it).
    ADD COLUMN last_activity_at timestamptz,
    ADD COLUMN first_positive_at timestamptz,
    ADD COLUMN first_negative_at timestamptz,
    -- The later of the last message and the last event: silent churn counts from here.
    ADD COLUMN quiet_since timestamptz,
    -- The user's first event after quiet_since within the silent-churn period.
    ADD COLUMN user_returned_at timestamptz,
    -- When the conversation churns silently unless its user returns; null when it cannot.
    ADD COLUMN silent_churn_at timestamptz;

-- The latest event time the attributor has seen per product: silent churn is judged against
-- it, never against the wall clock.
CREATE TABLE product_watermarks (
    product_id uuid PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    event_at   timestamptz NOT NULL
);

-- Open conversations whose silent-churn time a watermark may pass.
CREATE INDEX conversation_outcomes_churn_due ON conversation_outcomes (product_id, silent_churn_at)
    WHERE verdict = 'open' AND silent_churn_at IS NOT NULL;
-- A user's event within the silent-churn period of one of their conversations.
CREATE INDEX conversation_outcomes_user ON conversation_outcomes (user_id, quiet_since)
    WHERE user_id IS NOT NULL;
-- The API's list: a product's conversations, newest first.
CREATE INDEX conversation_outcomes_recent
    ON conversation_outcomes (product_id, quiet_since DESC, conversation_id DESC);

-- The wire document of an outcome (gf.outcomes.v1, the API), built in one place for the
-- attributor that publishes it and the control plane that serves it.
CREATE VIEW conversation_outcome_documents AS
SELECT o.conversation_id, o.product_id, o.verdict, o.quiet_since,
       jsonb_build_object(
           'conversationId', o.conversation_id,
           'productId', o.product_id,
           'externalConversationId', c.external_conversation_id,
           'userId', o.user_id,
           'verdict', o.verdict,
           'decidedByEventId', o.decided_by_event_id,
           'events', jsonb_build_object('total', o.events, 'positive', o.positive_events,
                                        'negative', o.negative_events,
                                        'neutral', o.neutral_events),
           'value', jsonb_build_object('total', o.total_value, 'positive', o.positive_value,
                                       'negative', o.negative_value, 'neutral', o.neutral_value),
           'revenue', o.revenue,
           'refunds', o.refunds,
           'qualityImpact', o.quality_impact,
           'firstEventAt', o.first_event_at,
           'lastEventAt', o.last_event_at,
           'lastActivityAt', o.last_activity_at,
           'secondsToFirstPositive',
               extract(epoch FROM greatest(o.first_positive_at - o.last_activity_at, interval '0')),
           'secondsToFirstNegative',
               extract(epoch FROM greatest(o.first_negative_at - o.last_activity_at, interval '0')),
           'silentChurnAt', o.silent_churn_at
       ) AS document
  FROM conversation_outcomes o
  JOIN conversations c ON c.id = o.conversation_id;
