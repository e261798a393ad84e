/**
 * examples/kubernetes/ played on this machine, with no cluster: the daemons' certificate is
 * made by secret.yaml's own openssl lines (the Service's name swapped for localhost), the
 * CronJob's client is registered by client-secrets.yaml's `sy client create` line, a real
 * `bin/sy daemon` runs with daemon.yaml's arguments (its --listen moved to loopback, port
 * 0, and its TLS files to where the lines above wrote them), and the CronJob's init
 * container runs its `sh -c` script with exactly its environment (the Secret's values, the
 * CA file) and nothing else: no HOME, no SY_HOME, no key of the store. The store is SQLite
 * (the daemons' side is the same on PostgreSQL), the target the machine's PostgreSQL.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT, makeHome, runSy, type SyHome } from '../helpers/cli.js';
import { tag } from '../helpers/db.js';
import { type Daemon, PG5432, dropPgPrefix, mustJson, pgExists, startDaemon, waitFor } from '../helpers/revocation.js';

const DIR = join(ROOT, 'examples/kubernetes');
const text = (name: string) => readFileSync(join(DIR, name), 'utf8');
const docs = (name: string) => parseAllDocuments(text(name)).map((d) => d.toJS() as Record<string, any>);
const SERVICE_HOST = 'sy-daemon.myapp.svc';

/** The commented shell lines of a file between two markers, `# ` and continuations joined. */
function commentedLines(file: string, from: string, to: string): string[] {
  const body = text(file);
  const lines = body.slice(body.indexOf(from), body.indexOf(to)).split('\n').slice(1);
  return lines.map((l) => l.replace(/^#\s*/, '')).join('\n').replace(/\\\n\s*/g, ' ').split('\n').filter((l) => l.trim() !== '');
}

function get(url: string, path: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('examples/kubernetes on one machine', () => {
  const T = tag();
  const prefix = `k8s${T}_`;
  const dir = mkdtempSync(join(tmpdir(), 'sy-k8s-'));
  let sy: SyHome;
  let daemon: Daemon | undefined;

  afterAll(async () => {
    await daemon?.stop();
    sy?.cleanup();
    await dropPgPrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  test("the seed's CronJob, with only its own environment, gets a lease from daemons started as daemon.yaml says, over TLS made as secret.yaml says", async () => {
    sy = await makeHome();
    await mustJson(sy, ['secret', 'create', 'db:postgresql:k8sroot', '--attributes', '{"type": "postgresql"}', '--data', '-'], {
      input: JSON.stringify({ host: PG5432.host, port: PG5432.port, username: PG5432.user, password: PG5432.password, database: 'postgres' }),
    });
    const dynamic = await mustJson(sy, ['secret', 'create', 'db:postgresql:k8sdyn', '--attributes', '-'], {
      input: JSON.stringify({ linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:k8sroot' }, grantPermissions: { what: 'SELECT', where: '*.*' }, userPrefix: prefix, ttl: 3600 }),
    });

    // secret.yaml's openssl lines, for localhost instead of the Service's name.
    const openssl = commentedLines('secret.yaml', 'With a CA of your own:', '# ca.crt (public)');
    expect(openssl.filter((l) => l.includes(SERVICE_HOST)).length).toBeGreaterThan(0);
    execFileSync('bash', ['-euc', openssl.join('\n').replaceAll(SERVICE_HOST, 'localhost')], { cwd: dir, stdio: 'pipe' });

    // client-secrets.yaml's line for the CronJob's client.
    const create = commentedLines('client-secrets.yaml', 'same objects from files:', '# Client names').find((l) => l.startsWith('sy client create db-credential-refresh'))!;
    const words = create.replace('<REPLACE_RECORD_PATH>', 'db:postgresql:k8sdyn').replace('cronjob.pem', join(dir, 'cronjob.pem')).split(' ').slice(1);
    expect((await sy.run(words)).exitCode).toBe(0);

    // daemon.yaml's container, its address and files moved to this machine.
    const deployment = docs('daemon.yaml').find((d) => d.kind === 'Deployment')!;
    const container = deployment.spec.template.spec.containers[0];
    const args = (container.args as string[]).map((a) => (a === '0.0.0.0:8443' ? '127.0.0.1:0' : a.replace('/etc/sy-tls/', `${dir}/`)));
    expect(args[0]).toBe('daemon');
    daemon = startDaemon(sy, args.slice(1));
    const listening = (await daemon.waitForEvent((e) => e.event === 'listening', 30_000)) as unknown as { url: string };
    const port = new URL(listening.url).port;
    const server = `https://localhost:${port}`;
    const ca = readFileSync(join(dir, 'ca.crt'));
    // The probes and the scrape, as the kubelet and Prometheus ask (the CA aside). The daemon
    // listens before its store is open and its first pass is done, and is not ready until
    // then: the kubelet asks again every periodSeconds, as this does (more often).
    for (const probe of ['livenessProbe', 'startupProbe']) {
      expect({ probe, status: (await get(server, container[probe].httpGet.path, ca)).status }).toEqual({ probe, status: 200 });
    }
    const ready = await waitFor('the readiness probe to answer 200', async () => (await get(server, container.readinessProbe.httpGet.path, ca)).status === 200, 30_000, 250);
    expect(ready).toBe(true);
    const metrics = await get(server, deployment.spec.template.metadata.annotations['prometheus.io/path'], ca);
    expect(metrics.body).toMatch(/^sy_/m);

    // The CronJob's init container: its script, its environment, its Secret's values.
    const cronjob = docs('cronjob.yaml').find((d) => d.kind === 'CronJob')!;
    const init = cronjob.spec.jobTemplate.spec.template.spec.initContainers[0];
    const secret = docs('client-secrets.yaml').find((d) => d.kind === 'Secret' && d.metadata.name === 'syvault-sm')!;
    const secretValues: Record<string, string> = { 'client-id': secret.stringData['client-id'], 'private-key': readFileSync(join(dir, 'cronjob.pem'), 'utf8') };
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    const caDir = join(dir, 'sy-daemon-ca');
    mkdirSync(caDir);
    writeFileSync(join(caDir, 'ca.crt'), ca);
    const env: Record<string, string> = {};
    for (const e of init.env as { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }[]) {
      if (e.valueFrom) {
        expect(e.valueFrom.secretKeyRef.name).toBe('syvault-sm');
        env[e.name] = secretValues[e.valueFrom.secretKeyRef.key];
      } else {
        env[e.name] = e.value!.replace(`${SERVICE_HOST}:8443`, `localhost:${port}`).replace('/etc/sy-daemon-ca', caDir);
      }
    }
    expect(Object.keys(env)).toEqual(['SY_SERVER', 'SY_CLIENT_ID', 'SY_PRIVATE_KEY', 'SY_CA_CERT']);
    const script = (init.command[2] as string).replace('<REPLACE_RECORD_UID>', dynamic.id).replaceAll('/shared/', `${shared}/`);
    // `sy` on the PATH, as in the image; the environment is the container's and nothing else.
    const ran = execFileSync('sh', ['-c', script], { env: { ...env, PATH: `${join(ROOT, 'bin')}:${process.env.PATH}` }, cwd: dir, stdio: 'pipe' });
    expect(ran.toString()).toBe('');
    const file = join(shared, 'db-creds.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lease = JSON.parse(readFileSync(file, 'utf8'));
    expect(lease).toMatchObject({ record_uid: dynamic.id, username: expect.stringMatching(new RegExp(`^${prefix}`)), password: expect.any(String) });
    expect(await pgExists(lease.username)).toBe(true);
    const audit = await mustJson(sy, ['audit', 'list', '--format', 'json']);
    expect(audit.data.filter((a: { action: string }) => a.action === 'lease.create').map((a: { actor: string }) => a.actor)).toEqual(['client:db-credential-refresh']);

    // What the pod cannot do with what it holds: a base secret, the store.
    expect((await runSy(['secret', 'read', 'db:postgresql:k8sroot'], env)).exitCode).toBe(5);
    expect((await runSy(['secret', 'search'], env)).exitCode).toBe(2);
    // The daemons' CA is what lets it trust them: without SY_CA_CERT the certificate is refused.
    const { SY_CA_CERT: _ca, ...seedsThree } = env;
    expect((await runSy(['dynamic', 'lease', 'list'], seedsThree)).exitCode).toBe(4);

    expect((await runSy(['dynamic', 'lease', 'revoke', lease.lease_id], env)).exitCode).toBe(0);
    expect(await pgExists(lease.username)).toBe(false);
  });
});
