// Describes and checks the config file's values (plain values as the YAML parser returns them): strict
// mappings (unknown keys rejected), optional keys, integers with bounds, strings with length bounds,
// patterns and custom checks, booleans, enums, lists with a minimum length, and checks across the keys
// of a mapping. Only what the config needs, so a CLI run with a config file does not load a general
// schema library (docs/decisions.md, "Config"). The TypeScript type of a value follows from its schema
// (Infer).
//
// A check finds the first problem only, in a fixed order: in a mapping its known keys in the schema's
// order (what is nested in them included), then the first unknown key in the value's order, then the
// mapping's own checks (only when nothing else was wrong); in a list its entries in order, then its
// length; in a string or number its type, then each rule in the order it was added.
//
// A string may be marked as a filesystem path (`.path()`): mapPaths rewrites every such value of a
// checked config (the config file resolves them against its directory), so a path key is one mark in
// the schema, not one more line in a list that a new key could be left out of (stop 47).

export type Path = ReadonlyArray<string | number>;

/** A problem with a value: where it is, and what follows its dotted key in the message. */
export interface Issue {
  readonly path: Path;
  /** `unknown_key`: the path ends with the key; `rule`: `message` says what the value must be. */
  readonly code: 'unknown_key' | 'rule';
  readonly message: string;
}

const rule = (path: Path, message: string): Issue => ({ path, code: 'rule', message });

/** `prefix.key[0].sub must be …` / `prefix.key.typo: unknown key`. */
export function describeIssue(prefix: string, issue: Issue): string {
  let where = prefix;
  for (const seg of issue.path) where += typeof seg === 'number' ? `[${seg}]` : `.${seg}`;
  return issue.code === 'unknown_key' ? `${where}: unknown key` : `${where} ${issue.message}`;
}

export abstract class Schema<T> {
  /** Carries the type only (Infer); never set. */
  declare readonly _type: T;
  /** The first problem with `value` at `path`, or undefined when it is valid. */
  abstract issue(value: unknown, path: Path): Issue | undefined;
  optional(): Optional<T> {
    return new Optional(this);
  }
  /** The value, typed, or its first problem. */
  check(value: unknown): { ok: true; value: T } | { ok: false; issue: Issue } {
    const issue = this.issue(value, []);
    return issue ? { ok: false, issue } : { ok: true, value: value as T };
  }
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

declare const optionalBrand: unique symbol;

export class Optional<T> extends Schema<T | undefined> {
  declare readonly [optionalBrand]: true;
  constructor(readonly inner: Schema<T>) {
    super();
  }
  issue(value: unknown, path: Path): Issue | undefined {
    return value === undefined ? undefined : this.inner.issue(value, path);
  }
}

/** A missing value (undefined) where one is required, else `must be <what>`. */
function typeIssue(value: unknown, path: Path, what: string): Issue {
  return rule(path, value === undefined ? 'is required' : `must be ${what}`);
}

interface Rule<T> {
  ok(value: T): boolean;
  message: string | ((value: T) => string);
}

/** A scalar: a type test, then rules in the order they were added; each method returns a new schema. */
abstract class Scalar<T, Self extends Scalar<T, Self>> extends Schema<T> {
  constructor(protected readonly rules: ReadonlyArray<Rule<T>> = []) {
    super();
  }
  protected abstract with(rules: ReadonlyArray<Rule<T>>): Self;
  /** The value's type problem (`must be a number`), if any. */
  protected abstract typeIssue(value: unknown, path: Path): Issue | undefined;
  /** A rule of our own: `ok` false → `<key> <message>` (a function: the message of that value). */
  refine(ok: (value: T) => boolean, message: string | ((value: T) => string)): Self {
    return this.with([...this.rules, { ok, message }]);
  }
  issue(value: unknown, path: Path): Issue | undefined {
    const wrong = this.typeIssue(value, path);
    if (wrong) return wrong;
    const broken = this.rules.find((r) => !r.ok(value as T));
    if (!broken) return undefined;
    return rule(path, typeof broken.message === 'string' ? broken.message : broken.message(value as T));
  }
}

/** A finite number that is an integer (and a safe one: beyond ±2^53-1 the message names that bound). */
export class IntegerSchema extends Scalar<number, IntegerSchema> {
  protected with(rules: ReadonlyArray<Rule<number>>): IntegerSchema {
    return new IntegerSchema(rules);
  }
  protected typeIssue(value: unknown, path: Path): Issue | undefined {
    if (typeof value !== 'number' || !Number.isFinite(value)) return typeIssue(value, path, 'a number');
    if (!Number.isInteger(value)) return rule(path, 'must be an integer');
    if (value < Number.MIN_SAFE_INTEGER) return rule(path, `must be ≥ ${Number.MIN_SAFE_INTEGER}`);
    if (value > Number.MAX_SAFE_INTEGER) return rule(path, `must be ≤ ${Number.MAX_SAFE_INTEGER}`);
    return undefined;
  }
  min(n: number, message: string): IntegerSchema {
    return this.refine((v) => v >= n, message);
  }
  max(n: number, message: string): IntegerSchema {
    return this.refine((v) => v <= n, message);
  }
}

/** Which values of a path string are paths: all, or all but those `notAPath` says are not. */
export interface PathSpec {
  /** A value that is no path (an inline key among key files): left as it is. */
  readonly notAPath?: (value: string) => boolean;
}

/** A string; lengths count UTF-16 code units (String.prototype.length). */
export class StringSchema extends Scalar<string, StringSchema> {
  constructor(
    rules: ReadonlyArray<Rule<string>> = [],
    /** Set when the string is a filesystem path (mapPaths). */
    readonly pathSpec?: PathSpec,
  ) {
    super(rules);
  }
  protected with(rules: ReadonlyArray<Rule<string>>): StringSchema {
    return new StringSchema(rules, this.pathSpec);
  }
  /** Marks the string as a filesystem path (mapPaths rewrites it). */
  path(spec: PathSpec = {}): StringSchema {
    return new StringSchema(this.rules, spec);
  }
  protected typeIssue(value: unknown, path: Path): Issue | undefined {
    return typeof value === 'string' ? undefined : typeIssue(value, path, 'a string');
  }
  min(n: number, message: string): StringSchema {
    return this.refine((v) => v.length >= n, message);
  }
  max(n: number, message: string): StringSchema {
    return this.refine((v) => v.length <= n, message);
  }
  /** `re` must not be global or sticky (test() would then depend on lastIndex). */
  regex(re: RegExp, message: string): StringSchema {
    return this.refine((v) => re.test(v), message);
  }
}

export class BooleanSchema extends Schema<boolean> {
  issue(value: unknown, path: Path): Issue | undefined {
    return typeof value === 'boolean' ? undefined : typeIssue(value, path, 'a boolean');
  }
}

/** One of a few strings; anything else (another type, null) gets the list of options. */
export class EnumSchema<const V extends string> extends Schema<V> {
  constructor(private readonly options: readonly V[]) {
    super();
  }
  issue(value: unknown, path: Path): Issue | undefined {
    if ((this.options as readonly unknown[]).includes(value)) return undefined;
    return rule(path, `Invalid option: expected one of ${this.options.map((o) => `"${o}"`).join('|')}`);
  }
}

export class ArraySchema<T> extends Schema<T[]> {
  constructor(
    readonly item: Schema<T>,
    private readonly minLength?: { n: number; message: string },
  ) {
    super();
  }
  min(n: number, message: string): ArraySchema<T> {
    return new ArraySchema(this.item, { n, message });
  }
  issue(value: unknown, path: Path): Issue | undefined {
    if (!Array.isArray(value)) return typeIssue(value, path, 'a list');
    for (let i = 0; i < value.length; i++) {
      const found = this.item.issue(value[i], [...path, i]);
      if (found) return found;
    }
    if (this.minLength && value.length < this.minLength.n) return rule(path, this.minLength.message);
    return undefined;
  }
}

export type Shape = Record<string, Schema<unknown>>;

type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends Optional<unknown> ? K : never }[keyof S];
type Flatten<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<S extends Shape> = Flatten<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

/** A mapping's own check across its keys: the problem (path relative to the mapping), if any. */
type CrossCheck<T> = (value: T) => Issue | undefined;

/** A mapping with exactly these keys (each may be optional); any other key is a problem. */
export class ObjectSchema<S extends Shape> extends Schema<ObjectOf<S>> {
  constructor(
    readonly shape: S,
    private readonly crossChecks: ReadonlyArray<CrossCheck<ObjectOf<S>>> = [],
  ) {
    super();
  }
  /** Whether `key` is one of this mapping's keys (own keys only: `toString` is not one). */
  has(key: string): boolean {
    return Object.hasOwn(this.shape, key);
  }
  /** A check across keys, run only when the mapping has no other problem. */
  refine(check: CrossCheck<ObjectOf<S>>): ObjectSchema<S> {
    return new ObjectSchema(this.shape, [...this.crossChecks, check]);
  }
  issue(value: unknown, path: Path): Issue | undefined {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return typeIssue(value, path, 'a mapping');
    const record = value as Record<string, unknown>;
    for (const [key, schema] of Object.entries(this.shape)) {
      const found = schema.issue(Object.hasOwn(record, key) ? record[key] : undefined, [...path, key]);
      if (found) return found;
    }
    const unknown = Object.keys(record).find((k) => !this.has(k));
    if (unknown !== undefined)
      return { path: [...path, unknown], code: 'unknown_key', message: 'unknown key' };
    for (const check of this.crossChecks) {
      const found = check(record as ObjectOf<S>);
      if (found) return { ...found, path: [...path, ...found.path] };
    }
    return undefined;
  }
}

export const integer = (): IntegerSchema => new IntegerSchema();
export const string = (): StringSchema => new StringSchema();
export const boolean = (): BooleanSchema => new BooleanSchema();
export const oneOf = <const V extends string>(options: readonly V[]): EnumSchema<V> =>
  new EnumSchema(options);
export const array = <T>(item: Schema<T>): ArraySchema<T> => new ArraySchema(item);
export const object = <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape);
/** A problem found by a mapping's own check (ObjectSchema.refine). */
export const problem = (path: Path, message: string): Issue => rule(path, message);

/**
 * `value` (valid for `schema`) with every string the schema marks as a path replaced by `f(string, at)`
 * (`at`: where it is, as an Issue's path); what holds no path is returned as it is, never mutated.
 */
export function mapPaths<T>(schema: Schema<T>, value: T, f: (path: string, at: Path) => string): T {
  return walk(schema as Schema<unknown>, value, [], f) as T;
}

function walk(
  schema: Schema<unknown>,
  value: unknown,
  at: Path,
  f: (p: string, at: Path) => string,
): unknown {
  if (value === undefined) return value;
  if (schema instanceof Optional) return walk(schema.inner, value, at, f);
  if (schema instanceof StringSchema) {
    const spec = schema.pathSpec;
    return spec && typeof value === 'string' && !spec.notAPath?.(value) ? f(value, at) : value;
  }
  if (schema instanceof ArraySchema && Array.isArray(value)) {
    const out = value.map((v, i) => walk(schema.item, v, [...at, i], f));
    return out.every((v, i) => v === value[i]) ? value : out;
  }
  if (schema instanceof ObjectSchema && value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    let out: Record<string, unknown> | undefined;
    for (const [key, s] of Object.entries(schema.shape as Shape)) {
      if (!Object.hasOwn(record, key)) continue;
      const v = walk(s, record[key], [...at, key], f);
      if (v !== record[key]) {
        out ??= { ...record };
        out[key] = v;
      }
    }
    return out ?? value;
  }
  return value;
}

/**
 * Where `schema` holds strings (a Path whose list entries are `-1`: every entry), and whether each is
 * marked as a path.
 */
export function stringKeys(schema: Schema<unknown>, at: Path = []): Array<{ at: Path; path: boolean }> {
  if (schema instanceof Optional) return stringKeys(schema.inner, at);
  if (schema instanceof StringSchema) return [{ at, path: schema.pathSpec !== undefined }];
  if (schema instanceof ArraySchema) return stringKeys(schema.item, [...at, -1]);
  if (schema instanceof ObjectSchema)
    return Object.entries(schema.shape as Shape).flatMap(([k, s]) => stringKeys(s, [...at, k]));
  return [];
}
