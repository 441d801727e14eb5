// Parses and validates an AsyncAPI document with the reference parser, resolving its $refs to
// the JSON Schema files; prints the channels it found as JSON, or every diagnostic and exits 1.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Parser, fromFile } from '@asyncapi/parser';

const file = resolve(process.argv[2] ?? '../asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse({
  source: pathToFileURL(file).href,
});
// Severity 0 is an error; warnings and hints are reported but do not fail.
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  console.error(`${['error', 'warning', 'info', 'hint'][d.severity]} ${d.code} at ${d.path.join('.')}: ${d.message}`);
}
if (!document || errors.length > 0) {
  console.error(`${file}: ${errors.length} error(s)`);
  process.exit(1);
}
const channels = document.channels().all().map((c) => ({
  id: c.id(),
  address: c.address(),
  messages: c.messages().all().map((m) => ({
    name: m.name(),
    hasPayload: m.hasPayload(),
    payloadProperties: m.hasPayload() ? Object.keys(m.payload().properties() ?? {}) : [],
  })),
}));
const operations = document.operations().all().map((o) => ({
  id: o.id(),
  action: o.action(),
  channels: o.channels().all().map((c) => c.address()),
}));
console.log(JSON.stringify({ version: document.version(), channels, operations }));
