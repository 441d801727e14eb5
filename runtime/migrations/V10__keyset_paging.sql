-- Lists are paged by (created_at, id) after a cursor: each page is an index range.
CREATE INDEX products_paging ON products (created_at, id);
CREATE INDEX connections_paging ON connections (product_id, created_at, id);
CREATE INDEX webhook_endpoints_paging ON webhook_endpoints (product_id, created_at, id);
