//! `gf.raw.v1`: the request body exactly as received (gzip decoded), keyed by request id (one
//! connection's requests spread over every partition), with everything else in Kafka headers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Provider;

/// Header names on raw records.
pub mod header {
    pub const CONNECTION_ID: &str = "gf-connection-id";
    pub const PRODUCT_ID: &str = "gf-product-id";
    pub const PROVIDER: &str = "gf-provider";
    /// Milliseconds since the Unix epoch, decimal.
    pub const RECEIVED_AT: &str = "gf-received-at";
    pub const REQUEST_ID: &str = "gf-request-id";
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context of the receiving request.
    pub const TRACEPARENT: &str = "traceparent";
}

/// What the receiver knows about a raw record besides its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecordMeta {
    pub connection_id: Uuid,
    pub product_id: Uuid,
    pub provider: Provider,
    pub received_at_ms: i64,
    pub request_id: String,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawHeaderError {
    #[error("raw record has no {0} header")]
    Missing(&'static str),
    #[error("raw record header {name} is not valid: {value:?}")]
    Invalid { name: &'static str, value: String },
}

/// The header map as strings, the shape `raw-headers.v1.schema.json` describes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawHeaderMap(pub BTreeMap<String, String>);

impl RawRecordMeta {
    /// Headers in the order they are written.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (header::CONNECTION_ID, self.connection_id.to_string()),
            (header::PRODUCT_ID, self.product_id.to_string()),
            (header::PROVIDER, self.provider.as_str().to_owned()),
            (header::RECEIVED_AT, self.received_at_ms.to_string()),
            (header::REQUEST_ID, self.request_id.clone()),
        ];
        if let Some(ct) = &self.content_type {
            out.push((header::CONTENT_TYPE, ct.clone()));
        }
        if let Some(tp) = &self.traceparent {
            out.push((header::TRACEPARENT, tp.clone()));
        }
        out
    }

    pub fn to_header_map(&self) -> RawHeaderMap {
        RawHeaderMap(
            self.to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// Reads the metadata back from record headers; unknown headers are ignored.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, RawHeaderError> {
        let mut map: BTreeMap<&str, &[u8]> = BTreeMap::new();
        for (k, v) in headers {
            if let Some(v) = v {
                map.insert(k, v);
            }
        }
        let text = |name: &'static str| -> Result<Option<String>, RawHeaderError> {
            map.get(name)
                .map(|v| {
                    std::str::from_utf8(v)
                        .map(str::to_owned)
                        .map_err(|_| RawHeaderError::Invalid {
                            name,
                            value: String::from_utf8_lossy(v).into_owned(),
                        })
                })
                .transpose()
        };
        let required = |name: &'static str| text(name)?.ok_or(RawHeaderError::Missing(name));
        let parsed = |name: &'static str, value: String| RawHeaderError::Invalid { name, value };

        let connection_id = required(header::CONNECTION_ID)?;
        let product_id = required(header::PRODUCT_ID)?;
        let provider = required(header::PROVIDER)?;
        let received_at = required(header::RECEIVED_AT)?;
        Ok(RawRecordMeta {
            connection_id: connection_id
                .parse()
                .map_err(|_| parsed(header::CONNECTION_ID, connection_id.clone()))?,
            product_id: product_id
                .parse()
                .map_err(|_| parsed(header::PRODUCT_ID, product_id.clone()))?,
            provider: provider
                .parse()
                .map_err(|_| parsed(header::PROVIDER, provider.clone()))?,
            received_at_ms: received_at
                .parse()
                .map_err(|_| parsed(header::RECEIVED_AT, received_at.clone()))?,
            request_id: required(header::REQUEST_ID)?,
            content_type: text(header::CONTENT_TYPE)?,
            traceparent: text(header::TRACEPARENT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawRecordMeta {
        RawRecordMeta {
            connection_id: Uuid::from_u128(1),
            product_id: Uuid::from_u128(2),
            provider: Provider::Segment,
            received_at_ms: 1_747_569_600_123,
            request_id: "req-1".into(),
            content_type: Some("application/json".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let meta = sample();
        let headers = meta.to_headers();
        let back =
            RawRecordMeta::from_headers(headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
                .unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn missing_and_invalid_headers_are_named() {
        let headers = sample().to_headers();
        let without_provider = headers.iter().filter(|(k, _)| *k != header::PROVIDER);
        assert_eq!(
            RawRecordMeta::from_headers(without_provider.map(|(k, v)| (*k, Some(v.as_bytes())))),
            Err(RawHeaderError::Missing(header::PROVIDER))
        );
        let bad_time = headers.iter().map(|(k, v)| {
            let v = if *k == header::RECEIVED_AT {
                "soon"
            } else {
                v.as_str()
            };
            (*k, Some(v.as_bytes()))
        });
        assert!(matches!(
            RawRecordMeta::from_headers(bad_time),
            Err(RawHeaderError::Invalid {
                name: header::RECEIVED_AT,
                ..
            })
        ));
    }
}
