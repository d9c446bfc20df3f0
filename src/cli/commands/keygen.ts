// `nexo-memory keygen`: create an ed25519 signing key pair (secret key file, mode 0600, and its `.pub`
// beside it) or, with --age, an age X25519 identity file (mode 0600, as age-keygen writes it); or print
// the public key (recipient) of an existing key file.

import { readFileSync } from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { Command } from '@commander-js/extra-typings';
import { generateIdentity, loadIdentities } from '../../crypto/age.js';
import { generateSigningKey, loadSigningKey, secretKeyFileText } from '../../crypto/sign.js';
import { AlreadyExistsError, asSnapshotError, InvalidInputError } from '../../model/errors.js';
import { printJson, runCommand } from '../context.js';
import { jsonOption } from './options.js';

/** Creates `path` exclusively with `mode` and writes `text` durably; never replaces a file. */
async function writeNew(path: string, text: string, mode: number): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const e = new AlreadyExistsError(path);
      e.message = `${path} already exists: keygen never replaces a key file`;
      throw e;
    }
    throw asSnapshotError(err, `creating ${path}`);
  }
  try {
    await fh.chmod(mode); // the umask may have removed bits; never added any
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function keygenCommand() {
  return new Command('keygen')
    .description(
      "create an ed25519 signing key (secret key file 0600 + .pub), or show a key file's public key",
    )
    .option(
      '-o, --out <file>',
      'write the secret key here (never overwritten) and its public key to <file>.pub',
    )
    .option('-y, --public <file>', 'print the public key of this secret key (or age identity) file')
    .option('--age', 'create an age X25519 identity for --encrypt / --decrypt-identity instead')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
The secret key signs snapshots (snapshot --sign FILE, or signing.key_path); hand out the one-line
public key (nexo-sign-pub1…) to whoever verifies or restores them (verify --trust, signing.trusted_keys).

With --age it writes an age identity file (interchangeable with age-keygen's) and prints its age1…
recipient, for snapshot --encrypt and encryption.recipients.

Examples:
  nexo-memory keygen --out /etc/nexo/sign.key
  nexo-memory keygen -y /etc/nexo/sign.key
  nexo-memory keygen --age --out ~/.nexo/age-identity.txt`,
    )
    .action(async (opts) => {
      await runCommand(opts, async () => {
        if (opts.out && opts.public) throw new InvalidInputError('pass either --out or --public, not both');
        if (opts.public) {
          if (/AGE-SECRET-KEY-1/i.test(readFileSync(opts.public, 'utf8'))) {
            const recipients = loadIdentities(opts.public).map((i) => i.recipient);
            if (opts.json) printJson({ recipients });
            else process.stdout.write(`${recipients.join('\n')}\n`);
            return 0;
          }
          const k = loadSigningKey(opts.public);
          if (opts.json) printJson({ public_key: k.publicKey, key_id: k.keyId });
          else process.stdout.write(`${k.publicKey}\n`);
          return 0;
        }
        if (!opts.out) throw new InvalidInputError('keygen needs --out <file> (or --public <file>)');
        if (opts.age) {
          const id = generateIdentity();
          const text = `# created: ${new Date().toISOString()}\n# public key: ${id.recipient}\n${id.identity}\n`;
          await writeNew(opts.out, text, 0o600);
          if (opts.json) printJson({ identity_path: opts.out, recipient: id.recipient });
          else {
            // "recipient", as --encrypt and encryption.recipients call it ("public key" is a signing key's).
            process.stderr.write(`age identity written to ${opts.out} (mode 0600)\n`);
            process.stdout.write(`recipient: ${id.recipient}\n`);
          }
          return 0;
        }
        const k = generateSigningKey();
        const pub = `${opts.out}.pub`;
        await writeNew(pub, `${k.publicKey}\n`, 0o644);
        try {
          await writeNew(opts.out, secretKeyFileText(k), 0o600);
        } catch (err) {
          await unlink(pub).catch(() => {});
          throw err;
        }
        if (opts.json)
          printJson({
            secret_key_path: opts.out,
            public_key_path: pub,
            public_key: k.publicKey,
            key_id: k.keyId,
          });
        else {
          process.stderr.write(`secret key written to ${opts.out} (mode 0600); public key in ${pub}\n`);
          process.stdout.write(`public key: ${k.publicKey}\nkey id:     ${k.keyId}\n`);
        }
        return 0;
      });
    });
}
