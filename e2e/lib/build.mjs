// Bundles the test page (Mattermost's RTCPeer from @mattermost/calls-common + pako) with esbuild.
// Usage: node lib/build.mjs   -> dist/page.bundle.js
import {build} from 'esbuild';
import {fileURLToPath} from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function buildBundle() {
    await build({
        entryPoints: [path.join(root, 'page', 'entry.js')],
        bundle: true,
        format: 'iife',
        target: 'chrome110',
        outfile: path.join(root, 'dist', 'page.bundle.js'),
        logLevel: 'warning',
    });
    return path.join(root, 'dist', 'page.bundle.js');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const out = await buildBundle();
    console.log(`bundle: ${out}`);
}
