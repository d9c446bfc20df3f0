// The published package as a TypeScript user consumes it: `npm pack`, unpacked into a scratch project
// that has only the package's runtime dependencies and @types/node (what any Node.js TypeScript project
// has), type-checked with `tsc --strict` and without skipLibCheck, so every shipped declaration file the
// consumer reaches is checked. The public types must not need a dev dependency of this package.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers/env.js';
import { packTarball, runtimeDependencies, scratchProject } from './helpers/installed.js';

const CONSUMER = `import {
  type ExportResult,
  loadConfig,
  LocalSnapshotter,
  type MemorySnapshotter,
  type RestoreReport,
  type SnapshotMeta,
  SnapshotError,
  snapshotterOptionsFromConfig,
  type VerifyReport,
  WriteGate,
} from 'nexo-memory-snapshot';

export async function use(configPath: string): Promise<string> {
  const config = loadConfig(configPath);
  const s: MemorySnapshotter = new LocalSnapshotter(snapshotterOptionsFromConfig(config.snapshot));
  const meta: SnapshotMeta = await s.snapshot({ agentId: 'ana', label: 'typed' });
  const report: VerifyReport = await s.verifySnapshot('ana', undefined, meta.id, { deep: true });
  const restored: RestoreReport = await s.restore({ agentId: 'ana', bundle: meta.bundle_path, dryRun: true });
  const exported: ExportResult = await s.export('ana', undefined, meta.id, '/tmp/out.tar.zst');
  await WriteGate.forAgent('/var/lib/nexo/state', 'ana').write(async () => {});
  // @ts-expect-error the types are real: an agent id is a string
  await s.list(42);
  try {
    await s.delete('ana', undefined, meta.id);
  } catch (err) {
    if (err instanceof SnapshotError) return \`\${err.code} \${err.exitCode}\`;
  }
  return \`\${report.status} \${restored.dry_run} \${exported.file_sha256}\`;
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    skipLibCheck: false,
    noEmit: true,
    types: ['node'],
  },
  files: ['consumer.ts'],
};

function declarationFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? declarationFiles(join(dir, e.name))
      : e.name.endsWith('.d.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

test('the packed package type-checks in a consumer under tsc --strict without skipLibCheck', (t) => {
  const deps = runtimeDependencies();
  const project = scratchProject(t, [...deps, '@types/node']);

  // Every module a shipped declaration file names is Node's own or a runtime dependency.
  const foreign: string[] = [];
  for (const file of declarationFiles(join(project.packageDir, 'dist'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.') || spec.startsWith('node:')) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      if (!deps.includes(name)) foreign.push(`${relative(project.packageDir, file)}: ${spec}`);
    }
  }
  assert.deepEqual(foreign, [], 'declaration files import only Node.js and runtime dependencies');

  writeFileSync(join(project.dir, 'consumer.ts'), CONSUMER);
  writeFileSync(join(project.dir, 'tsconfig.json'), `${JSON.stringify(TSCONFIG, null, 2)}\n`);
  const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  let output = '';
  let status = 0;
  try {
    output = execFileSync(process.execPath, [tsc, '-p', project.dir], { cwd: project.dir, encoding: 'utf8' });
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    status = e.status;
    output = e.stdout + e.stderr;
  }
  assert.equal(status, 0, output);
});

test('the packed package ships the built web console (served by `serve` at /), not its sources', () => {
  const names = execFileSync('tar', ['-tzf', packTarball()], { encoding: 'utf8' }).split('\n');
  for (const f of ['index.html', 'console.js', 'console.css'])
    assert.ok(names.includes(`package/dist/console/${f}`), `dist/console/${f} is packed`);
  assert.ok(!names.some((n) => n.startsWith('package/console/')), 'the console sources are not packed');
});

test('the packed package ships the bundled start-up dependencies (dist/vendor, loaded by src/util/vendored.ts)', () => {
  const names = execFileSync('tar', ['-tzf', packTarball()], { encoding: 'utf8' }).split('\n');
  assert.ok(names.includes('package/dist/vendor/yaml.cjs'), 'dist/vendor/yaml.cjs is packed');
});
