-- PostHog and the public events API join Amplitude and Segment as connection providers.
ALTER TABLE connections DROP CONSTRAINT connections_provider_check;
ALTER TABLE connections ADD CONSTRAINT connections_provider_check
    CHECK (provider IN ('amplitude', 'segment', 'posthog', 'api'));
