// Bundles the dashboard into dist/ui (run by `npm run build` and by `prepare`, so `npm ci` builds it).
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

const here = (path) => new URL(path, import.meta.url).pathname;
const out = here('../dist/ui/');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [here('src/main.tsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outfile: `${out}app.js`,
  logLevel: 'warning',
});
copyFileSync(here('index.html'), `${out}index.html`);
copyFileSync(here('app.css'), `${out}app.css`);
copyFileSync(here('../node_modules/uplot/dist/uPlot.min.css'), `${out}uplot.css`);
