// Native tests of keyed.js (plain Node.js, no WebAssembly): `node --test test_keyed.js`.
// build.sh runs them before building the component.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cents, convert, copyField, copyRow } from './keyed.js';

const enc = new TextEncoder();

/** A batch laid out as the host does: every byte in `data`, messages refer to it by span. */
function batch(messages) {
  const chunks = [];
  let size = 0;
  const span = (bytes) => {
    if (bytes === null || bytes === undefined) return undefined;
    const b = typeof bytes === 'string' ? enc.encode(bytes) : bytes;
    chunks.push(b);
    size += b.length;
    return { start: size - b.length, len: b.length };
  };
  const headers = [];
  const out = messages.map((m, i) => {
    const headerStart = headers.length;
    for (const [k, v] of m.headers ?? []) headers.push({ key: span(k), value: span(v) });
    return {
      topic: 0,
      partition: 0,
      offset: BigInt(i),
      timestamp: undefined,
      key: span(m.key),
      value: span(m.value),
      headerStart,
      headerCount: headers.length - headerStart,
    };
  });
  const data = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { topics: ['payments'], data, headers, messages: out };
}

function run(messages) {
  const out = convert.convertBatch(batch(messages));
  return {
    text: new TextDecoder().decode(out.copyText),
    outcomes: out.outcomes.map((o) => (o.tag === 'rows' ? o.val : `failed: ${o.val}`)),
  };
}

const COLUMNS = [
  { name: 'key', typeName: undefined },
  { name: 'source_header', typeName: undefined },
  { name: 'amount_cents', typeName: undefined },
];
const TABLES = [{ schema: 'public', name: 't', columns: COLUMNS, key: [] }];

test('copy text escaping', () => {
  assert.equal(copyField('a\\b\tc\nd\re'), 'a\\\\b\\tc\\nd\\re');
  assert.equal(copyField('\\N'), '\\\\N');
  assert.equal(copyField(null), '\\N');
  assert.equal(copyField('plain é ✓'), 'plain é ✓');
  assert.equal(copyRow(['x', null, '']), 'x\t\\N\t\n');
  assert.throws(() => copyField('a\0b'), /NUL/);
});

test('cents are exact', () => {
  const cases = [
    ['12.34', '1234'], ['0.07', '7'], ['-1.5', '-150'], ['19.990', '1999'], ['5', '500'],
    ['5.', '500'], ['-0.00', '0'], ['+3.10', '310'], ['007.01', '701'],
    ['123456789012345678.91', '12345678901234567891'], [0.1, '10'], [12.34, '1234'],
    [1.005, '100.5'],
  ];
  for (const [amount, want] of cases) {
    if (want.includes('.')) {
      assert.throws(() => cents(amount), /fraction of a cent/, `${amount}`);
    } else {
      assert.equal(cents(amount), want, `${amount}`);
    }
  }
  assert.throws(() => cents('1e3'), /not a decimal number/);
  assert.throws(() => cents('12.3.4'), /not a decimal number/);
  assert.throws(() => cents(true), /decimal string or number/);
  assert.throws(() => cents(1e20), /send it as a string/);
});

test('key, header and amount become one row', () => {
  convert.configure([], TABLES);
  const { text, outcomes } = run([
    { key: 'order-1', value: '{"amount":"12.34"}', headers: [['trace', 'x'], ['source', 'web']] },
    { key: null, value: '{"amount":7}', headers: [] },
    { key: 'k\t2', value: '{"other":1}', headers: [['source', null]] },
    { key: 'tomb', value: null, headers: [['source', 'web']] },
    { key: 'k5', value: '{"amount":"1.001"}', headers: [] },
    { key: new Uint8Array([0xff]), value: '{"amount":"1"}', headers: [] },
    { key: 'k7', value: '{"amount":', headers: [] },
    { key: 'k8', value: '[1]', headers: [] },
    { key: 'k9', value: '{"amount":"2"}', headers: [['source', new Uint8Array([0xc3])]] },
    { key: 'a\0b', value: '{"amount":"3"}', headers: [['source', 'app']] },
    { key: 'k11', value: '{"amount":"-0.5"}', headers: [['sourcex', 'no'], ['source', 'pos']] },
  ]);
  assert.equal(text, 'order-1\tweb\t1234\n\\N\t\\N\t700\nk\\t2\t\\N\t\\N\nk11\tpos\t-50\n');
  assert.deepEqual(outcomes.slice(0, 4), [1, 1, 1, 0]);
  assert.match(outcomes[4], /^failed: the amount 1.001 has a fraction of a cent$/);
  assert.equal(outcomes[5], 'failed: the message key is not valid UTF-8');
  assert.match(outcomes[6], /^failed: invalid JSON: /);
  assert.equal(outcomes[7], 'failed: the message value is not a JSON object');
  assert.equal(outcomes[8], 'failed: the header source is not valid UTF-8');
  assert.match(outcomes[9], /NUL/);
  assert.equal(outcomes[10], 1);
});

test('settings', () => {
  convert.configure([['header', 'origin'], ['amount.field', 'total']], TABLES);
  assert.equal(run([{ key: 'k', value: '{"total":"1.20"}', headers: [['origin', 'pos']] }]).text, 'k\tpos\t120\n');
  assert.throws(() => convert.configure([], [{ ...TABLES[0], columns: COLUMNS.slice(1) }]), (e) => e.includes('writes 3 columns'));
  assert.throws(() => convert.configure([['headr', 'x']], TABLES), (e) => e.includes('unknown setting(s) headr'));
  assert.deepEqual(convert.info(), { name: 'js-keyed', version: '0.1.0' });
});
