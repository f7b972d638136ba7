#!/usr/bin/env node
/**
 * A tiny remote judge to try the remote reward (config remote_reward_url) with, standing in for a
 * judge model served on another machine. Node's own http module only: copy it anywhere.
 *
 *   node examples/remote-judge-server.mjs [--port 8787] [--host 127.0.0.1] [--delay-ms 0] [--fail-rate 0]
 *   grpo train --config examples/remote-reward.yaml      (in another terminal)
 *
 * The protocol every remote reward speaks:
 *   POST /score  {"reward": "judge", "items": [{"prompt": "fox moon:", "completion": "...", "meta": {...}}, ...]}
 *   200          {"scores": [0.8, 1, ...]}       one number (or null) per item, in order
 *
 * Its score: the share of a completion's words that are words of the keywords task's language
 * (`the`, `and` and the task's nouns, adjectives and verbs), so gibberish scores low; 0 for an
 * empty completion. --delay-ms makes every answer slow (a busy model); --fail-rate answers that
 * share of requests with HTTP 503, which the workers retry with backoff.
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '8787' },
    host: { type: 'string', default: '127.0.0.1' },
    'delay-ms': { type: 'string', default: '0' },
    'fail-rate': { type: 'string', default: '0' },
  },
});
const delayMs = Number(args['delay-ms']);
const failRate = Number(args['fail-rate']);

const VOCABULARY = new Set(
  (
    'the and cat dog fox bird fish tree moon sun river stone ship king child wolf horse rose bear frog lamp road hill star boat queen ' +
    'red old small quiet bright dark happy cold sees likes finds follows chases hears paints keeps'
  ).split(' '),
);

function score(completion) {
  const words = completion.toLowerCase().match(/[a-z']+/g) ?? [];
  if (words.length === 0) return 0;
  return words.filter((w) => VOCABULARY.has(w)).length / words.length;
}

let requests = 0;
const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    requests++;
    let items;
    try {
      items = JSON.parse(body).items;
      if (!Array.isArray(items)) throw new Error('no "items" array');
    } catch (err) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(err.message) }));
      return;
    }
    setTimeout(() => {
      if (Math.random() < failRate) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"busy"}');
        return;
      }
      const scores = items.map((it) => (typeof it?.completion === 'string' ? score(it.completion) : null));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ scores }));
    }, delayMs);
  });
});

server.listen(Number(args.port), args.host, () => {
  const { address, port } = server.address();
  console.log(`judge listening on http://${address}:${port}/score (delay ${delayMs} ms, fail rate ${failRate})`);
});
const report = setInterval(() => console.log(`judge: ${requests} requests so far`), 30_000);
report.unref();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.log(`judge: ${requests} requests in all; stopping`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
