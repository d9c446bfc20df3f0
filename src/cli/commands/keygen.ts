// `nexo-memory keygen`: create an ed25519 signing key pair (secret key file, mode 0600, and its `.pub`
// beside it) or, with --age, an age X25519 identity file (mode 0600, as age-keygen writes it); or print
// the public key (recipient) of an existing key file.

import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { generateIdentity, loadIdentities } from '../../crypto/age.js';
import { generateSigningKey, loadSigningKey, readKeyFile, secretKeyFileText } from '../../crypto/sign.js';
import {
  AlreadyExistsError,
  asSnapshotError,
  InvalidInputError,
  IoError,
  KeyError,
} from '../../model/errors.js';
import { writeNewFile } from '../../util/new-file.js';
import { Command } from '../commander.js';
import { checkIdentityFile, checkSigningKeyFile, printJson, runCommand } from '../context.js';
import { jsonOption } from './options.js';

/**
 * Creates `path` with `mode` holding `text`, durably and whole (util/new-file.ts): a write that fails
 * (a full disk) or a kill leaves no empty or partial key file for the next keygen to refuse (stop 55).
 * Never replaces a file.
 */
async function writeNew(path: string, text: string, mode: number): Promise<void> {
  try {
    await writeNewFile(path, text, mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const e = new AlreadyExistsError(path);
      e.message = `${path} already exists: keygen never replaces a key file`;
      throw e;
    }
    // the temporary file's ENOENT names a file the user never asked for: say which directory is missing
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dirname(resolve(path))))
      throw new IoError(
        `creating ${path}: its directory ${dirname(resolve(path))} does not exist (keygen never creates directories; create it first)`,
        err,
      );
    throw asSnapshotError(err, `creating ${path}`);
  }
}

/**
 * The one JSON shape of every keygen answer: `kind` (`ed25519` signing key or `age` identity) and
 * `public_key` (nexo-sign-pub1… or the age1… recipient), then what applies: `key_id` (ed25519), and the
 * files written (`secret_key_path`, and `public_key_path` for the ed25519 `.pub`).
 */
function keyJson(k: {
  kind: 'ed25519' | 'age';
  publicKey: string;
  keyId?: string;
  secretKeyPath?: string;
  publicKeyPath?: string;
}): Record<string, string> {
  return {
    kind: k.kind,
    public_key: k.publicKey,
    ...(k.keyId ? { key_id: k.keyId } : {}),
    ...(k.secretKeyPath ? { secret_key_path: k.secretKeyPath } : {}),
    ...(k.publicKeyPath ? { public_key_path: k.publicKeyPath } : {}),
  };
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
        if (opts.out !== undefined && opts.public !== undefined)
          throw new InvalidInputError('pass either --out or --public, not both');
        if (opts.public !== undefined) {
          if (/AGE-SECRET-KEY-1/i.test(readKeyFile(opts.public))) {
            const recipients = loadIdentities(checkIdentityFile(opts.public)).map((i) => i.recipient);
            if (opts.json) {
              if (recipients.length !== 1)
                throw new InvalidInputError(
                  `${opts.public} holds ${recipients.length} identities and --json describes one key; without --json every recipient is printed`,
                );
              printJson(keyJson({ kind: 'age', publicKey: recipients[0]! }));
            } else process.stdout.write(`${recipients.join('\n')}\n`);
            return 0;
          }
          let k: ReturnType<typeof loadSigningKey>;
          try {
            k = loadSigningKey(opts.public);
          } catch (err) {
            // the public key file itself: say what -y takes, not what signing needs
            if (err instanceof KeyError && / a public key; /.test(err.message))
              throw new KeyError(
                `${opts.public} is a public key already; -y prints the public key of a secret key file (the one keygen wrote beside this .pub)`,
              );
            throw err;
          }
          checkSigningKeyFile(opts.public);
          if (opts.json) printJson(keyJson({ kind: 'ed25519', publicKey: k.publicKey, keyId: k.keyId }));
          else process.stdout.write(`${k.publicKey}\n`);
          return 0;
        }
        if (opts.out === undefined)
          throw new InvalidInputError('keygen needs --out <file> (or --public <file>)');
        if (opts.age) {
          const id = generateIdentity();
          const text = `# created: ${new Date().toISOString()}\n# public key: ${id.recipient}\n${id.identity}\n`;
          await writeNew(opts.out, text, 0o600);
          if (opts.json)
            printJson(keyJson({ kind: 'age', publicKey: id.recipient, secretKeyPath: opts.out }));
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
          printJson(
            keyJson({
              kind: 'ed25519',
              publicKey: k.publicKey,
              keyId: k.keyId,
              secretKeyPath: opts.out,
              publicKeyPath: pub,
            }),
          );
        else {
          process.stderr.write(`secret key written to ${opts.out} (mode 0600); public key in ${pub}\n`);
          process.stdout.write(`public key: ${k.publicKey}\nkey id:     ${k.keyId}\n`);
        }
        return 0;
      });
    });
}
