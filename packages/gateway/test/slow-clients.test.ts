import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startFixture, type Fixture } from './fixture.ts';

/** Open a TCP connection, write `data`, then stall; resolves with what the server sent once it closed the connection. */
function stall(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1', () => socket.write(data));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('close', () => resolve(received));
    socket.on('error', reject);
  });
}

describe('slow clients (slowloris: trickled headers or body)', () => {
  let f: Fixture;
  let port: number;
  before(async () => {
    f = await startFixture({ settings: { headers_timeout_ms: 300, request_timeout_ms: 600 } });
    await f.app.listen({ port: 0, host: '127.0.0.1' });
    const address = f.app.server.address();
    port = typeof address === 'object' && address ? address.port : 0;
  });
  after(async () => {
    await f.close();
  });

  it('a connection that never finishes its headers, or its body, is answered 408 and closed; a normal request still works', { timeout: 20_000 }, async () => {
    const [headers, body] = await Promise.all([
      stall(port, 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'),
      stall(port, 'POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":'),
    ]);
    assert.match(headers, /^HTTP\/1\.1 408/);
    assert.match(body, /^HTTP\/1\.1 408/);
    const response = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(response.status, 200);
  });
});
