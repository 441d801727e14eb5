-- An outcome document names its counts by influence `counts` (a conversation's `events` are its
-- attributed events, in the API's timeline) and carries `id`, as every item of the API does.
CREATE OR REPLACE VIEW conversation_outcome_documents AS
SELECT o.conversation_id, o.product_id, o.verdict, o.quiet_since,
       jsonb_build_object(
           'id', o.conversation_id,
           'conversationId', o.conversation_id,
           'productId', o.product_id,
           'externalConversationId', c.external_conversation_id,
           'userId', o.user_id,
           'verdict', o.verdict,
           'decidedByEventId', o.decided_by_event_id,
           'counts', jsonb_build_object('total', o.events, 'positive', o.positive_events,
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
