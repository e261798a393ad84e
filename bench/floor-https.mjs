#!/usr/bin/env node
// The floor of `sy dynamic lease create` in client mode: the least a Node script can do to ask
// the lease API for the same lease over the same HTTPS. It reads the same variables as sy
// (SY_SERVER, SY_CLIENT_ID, SY_PRIVATE_KEY, SY_CA_CERT), signs an EdDSA JWT with node:crypto
// (no library), POSTs {"path"} with node:https, and prints the body. No sy code, no jose.
//
//   node bench/floor-https.mjs <path>
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

const [path] = process.argv.slice(2);
const server = new URL(process.env.SY_SERVER);
const client = process.env.SY_CLIENT_ID;
const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const iat = Math.floor(Date.now() / 1000);
const unsigned = `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64({ iss: client, sub: client, aud: server.origin, iat, exp: iat + 300, jti: randomUUID() })}`;
const token = `${unsigned}.${sign(null, Buffer.from(unsigned), createPrivateKey(process.env.SY_PRIVATE_KEY)).toString('base64url')}`;
const body = JSON.stringify({ path });
const req = request(
  new URL('/api/sm/v1/dynamic/lease', server),
  {
    method: 'POST',
    ca: process.env.SY_CA_CERT ? readFileSync(process.env.SY_CA_CERT) : undefined,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  },
  (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => (text += chunk));
    res.on('end', () => {
      process.stdout.write(`${text}\n`);
      if (res.statusCode !== 201) process.exitCode = 1;
    });
  },
);
req.on('error', (error) => {
  process.stderr.write(`${error.message}\n`);
  process.exitCode = 1;
});
req.end(body);
