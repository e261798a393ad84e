/**
 * node-postgres answers AuthenticationCleartextPassword with the password itself, over
 * whatever the connection is: a server that answers at the address (or someone on the path
 * who turned TLS down) only has to ask. This makes a client refuse to: the password in
 * clear goes only over TLS that verified the server, or over a Unix socket (no TLS there;
 * the socket's directory vouches for the server). MD5 and SCRAM are left alone: they send
 * a salted proof, not the password (see the README's security model).
 *
 * No import of pg: the client is taken as it is at run time. pg asks its `password`
 * function for the password only after the request was read (a microtask later), so the
 * function can see which kind of request it answers and refuse.
 */
interface PgClientInternals {
  password?: unknown;
  connection: {
    stream?: { encrypted?: boolean; authorized?: boolean };
    prependListener(event: string, listener: () => void): unknown;
  };
}

export function refuseCleartextUnverified(client: object, refusal: () => Error, options: { unixSocket?: boolean } = {}): void {
  const internals = client as PgClientInternals;
  let cleartext = false;
  internals.connection.prependListener('authenticationCleartextPassword', () => {
    cleartext = true;
  });
  const given = internals.password;
  internals.password = (...args: unknown[]) => {
    const stream = internals.connection.stream;
    const verified = stream?.encrypted === true && stream.authorized === true;
    if (cleartext && !verified && !options.unixSocket) throw refusal();
    return typeof given === 'function' ? given(...args) : given;
  };
}
