// The Socket.IO reference for `loadtest reference-fanout` and `reference-connections`: the
// usual way to build this, carrying the same traffic as the node's fanout and connections.
//
//   node server.js        (PORT=0: any free port; the first line on stdout says which)
//
// - Connections authenticate with a token in the query (`?token=…`) or the connect packet's
//   auth (`{"token": …}`): any non-empty token, or exactly SIO_TOKEN when that is set. The
//   point is the same work per connection as the node's, not a user database.
// - `join` (a thread id, acknowledged) puts the socket in the room `thread:<id>`.
// - `post` ({thread, content}, acknowledged) emits `message` ({thread, content}) to the room
//   through the Redis adapter, the sender's own devices included (as the node does).
// - Only the WebSocket transport, as the load generator speaks it (no long-polling upgrade).
//
// Settings: PORT (0), HOST (127.0.0.1), REDIS_URL (redis://127.0.0.1:6379), SIO_TOKEN.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const PORT = Number(process.env.PORT || 0);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const SIO_TOKEN = process.env.SIO_TOKEN || '';
const THREAD_ID_MAX = 200;
const CONTENT_MAX = 10000;

function log(fields) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`);
}

function validThread(thread) {
  return typeof thread === 'string' && thread.length > 0 && thread.length <= THREAD_ID_MAX;
}

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on('error', (error) => log({ message: 'redis error', error: String(error) }));
  }
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(server, {
    transports: ['websocket'],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });

  io.use((socket, next) => {
    const given = socket.handshake.query.token || (socket.handshake.auth || {}).token;
    const ok = typeof given === 'string' && given.length > 0 && (!SIO_TOKEN || given === SIO_TOKEN);
    next(ok ? undefined : new Error('unauthorized'));
  });

  io.on('connection', (socket) => {
    socket.on('join', (thread, ack) => {
      if (!validThread(thread)) {
        if (typeof ack === 'function') ack({ error: 'bad thread' });
        return;
      }
      socket.join(`thread:${thread}`);
      if (typeof ack === 'function') ack({ ok: true });
    });
    socket.on('post', (payload, ack) => {
      const thread = payload && payload.thread;
      const content = payload && payload.content;
      const reply = typeof ack === 'function' ? ack : () => {};
      if (!validThread(thread) || typeof content !== 'string' || content.length > CONTENT_MAX) {
        reply({ error: 'bad post' });
        return;
      }
      const room = `thread:${thread}`;
      if (!socket.rooms.has(room)) {
        reply({ error: 'not joined' });
        return;
      }
      io.to(room).emit('message', { thread, content });
      reply({ ok: true });
    });
  });

  server.listen(PORT, HOST, () => {
    log({ message: 'listening', host: HOST, port: server.address().port, pid: process.pid });
  });

  const stop = () => {
    io.close(() => {
      Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
    });
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  log({ message: 'failed to start', error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
});
