-- The W3C trace context of what caused a webhook event, so every delivery attempt continues the
-- trace of the signal (or conversation message) that fired it.
ALTER TABLE webhook_events ADD COLUMN traceparent text;
