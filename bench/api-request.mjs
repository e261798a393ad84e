#!/usr/bin/env node
// The floor of `sy dynamic lease create` as a client of the lease API (row 12f): the least a
// Node script can do to make the same HTTPS request. BENCH_API (JSON): url, token (made
// beforehand), ca (a PEM file), body.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

const { url, token, ca, body } = JSON.parse(process.env.BENCH_API);
const payload = JSON.stringify(body);
const req = request(new URL('/api/sm/v1/dynamic/lease', url), {
  method: 'POST',
  ca: readFileSync(ca),
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
}, (res) => {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => (text += chunk));
  res.on('end', () => {
    if (res.statusCode !== 201) {
      process.stderr.write(`${res.statusCode} ${text}\n`);
      process.exitCode = 1;
    }
    process.stdout.write(`${text}\n`);
  });
});
req.end(payload);
