// A minimal webhook receiver for the benchmark, run as its own process so that it does not
// compete with flagstream for the event loop: counts impressions, answers 200.
import http from 'node:http';

let impressions = 0;
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const bytes = body.length;
    // Each impression object carries exactly one "receptionTimestamp" key: count those.
    for (let i = body.indexOf('receptionTimestamp'); i !== -1; i = body.indexOf('receptionTimestamp', i + 1)) impressions += 1;
    res.end('ok');
    process.send?.({ impressions, bytes });
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
