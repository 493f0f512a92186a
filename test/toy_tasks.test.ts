import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EOS, EQ, NULL, SEP, TOY_VOCAB, answer, bosId, encodeExample, makeTaskData, seqLength } from '../src/experiments/toy/tasks.js';

const D = (s: string) => [...s].map((c) => 9 + Number(c));

test('toy sequences follow docs/contract.md §7 exactly', () => {
  // add: 123 + 989 = 1112
  assert.deepEqual(encodeExample('add', 123, 989, 3, 1000), [bosId('add'), ...D('123'), SEP, ...D('989'), EQ, ...D('1112'), EOS]);
  // modadd: (123 + 989) mod 1000 = 112, written with n+1 digits
  assert.deepEqual(encodeExample('modadd', 123, 989, 3, 1000), [bosId('modadd'), ...D('123'), SEP, ...D('989'), EQ, ...D('0112'), EOS]);
  // reversal: one operand (b is n × NULL), answer left-padded with one 0
  assert.deepEqual(encodeExample('reversal', 120, 555, 3, 1000), [bosId('reversal'), ...D('120'), SEP, NULL, NULL, NULL, EQ, ...D('0021'), EOS]);
  // sort ascending, left-padded
  assert.deepEqual(encodeExample('sort', 503, 7, 3, 1000), [bosId('sort'), ...D('503'), SEP, NULL, NULL, NULL, EQ, ...D('0035'), EOS]);
  // leading zeros of operands are written
  assert.deepEqual(encodeExample('add', 7, 5, 3, 1000).slice(1, 4), D('007'));
  assert.equal(seqLength(3), 14);
  assert.deepEqual(answer('add', 999, 999, 3, 1000), [1, 9, 9, 8]);
});

test('task data: seeded, right shape, ids < V, every answer correct', () => {
  const n = 3;
  const T = seqLength(n);
  const a = makeTaskData('add', n, 1000, 500, 3);
  assert.equal(a.length, 500 * T);
  assert.deepEqual(a, makeTaskData('add', n, 1000, 500, 3));
  assert.notDeepEqual(a, makeTaskData('add', n, 1000, 500, 4));
  for (let i = 0; i < 500; i++) {
    const row = Array.from(a.subarray(i * T, (i + 1) * T));
    assert.ok(row.every((x) => x >= 0 && x < TOY_VOCAB));
    const num = (xs: number[]) => Number(xs.map((x) => x - 9).join(''));
    assert.equal(num(row.slice(9, 13)), num(row.slice(1, 4)) + num(row.slice(5, 8)));
  }
});
