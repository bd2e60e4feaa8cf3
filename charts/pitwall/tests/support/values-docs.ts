import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isScalar, isSeq, parseDocument, type Node, type Pair } from 'yaml';
import { CHART_DIR } from './chart.js';

/**
 * The settings of a values file with the comment above each, read with the schema: a key the schema
 * declares as a property is a chart setting (documented by its comment); a free-form map (annotations,
 * labels, env) is one setting whose entries are data.
 */

export interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  $ref?: string;
  description?: string;
  minimum?: number;
  maximum?: number;
}

export const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as SchemaNode & {
  definitions: Record<string, SchemaNode>;
};

function resolveRef(node: SchemaNode): SchemaNode {
  if (node.$ref === undefined) return node;
  const name = node.$ref.replace('#/definitions/', '');
  const target = schema.definitions[name];
  if (target === undefined) throw new Error(`unresolved $ref ${node.$ref}`);
  return resolveRef(target);
}

/** The schema of a setting by its dotted path (e.g. writer.batchMaxBytes), references resolved; undefined when it declares none. */
export function schemaAt(key: string): SchemaNode | undefined {
  let node: SchemaNode | undefined = schema;
  for (const part of key.split('.')) node = node === undefined ? undefined : resolveRef(node).properties?.[part];
  return node === undefined ? undefined : resolveRef(node);
}

export interface ValueSetting {
  /** Dotted path, e.g. ingestion.service.type. */
  key: string;
  /** The comment above it, lines joined; empty when there is none. */
  comment: string;
  /** Its value in the file, as plain data. */
  value: unknown;
  /** True when it has settings below it (a section), false for a value. */
  section: boolean;
}

export function valueSettings(file: string): ValueSetting[] {
  const document = parseDocument(readFileSync(file, 'utf8'));
  const found: ValueSetting[] = [];
  const walk = (node: Node | null, schemaNode: SchemaNode | undefined, path: string, inherited: string | null | undefined) => {
    if (!isMap(node) || schemaNode === undefined) return;
    const resolved = resolveRef(schemaNode);
    if (resolved.properties === undefined) return;
    for (const [index, pair] of (node.items as Pair<Node, Node>[]).entries()) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?';
      const child = resolved.properties[key];
      if (child === undefined) continue;
      // The yaml AST hangs the comment above a map's first key on the map (or the document) itself.
      const comment = pair.key.commentBefore ?? (index === 0 ? (node.commentBefore ?? inherited) : undefined) ?? '';
      const childSchema = resolveRef(child);
      const section = isMap(pair.value) && childSchema.properties !== undefined;
      found.push({
        key: `${path}${key}`,
        // A comment block separated from the key by a blank line (the file's header) is not about the key.
        comment: (comment.split(/\n\s*\n/).at(-1) ?? '')
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line !== '')
          .join(' '),
        value: pair.value === null ? null : (pair.value.toJSON() as unknown),
        section,
      });
      if (section) walk(pair.value, child, `${path}${key}.`, undefined);
      else if (!isSeq(pair.value)) walk(pair.value, child, `${path}${key}.`, undefined);
    }
  };
  walk(document.contents, schema, '', document.commentBefore);
  return found;
}

function typeOf(value: unknown): string {
  if (Array.isArray(value)) return 'list';
  if (value === null) return 'string';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  if (typeof value === 'object') return 'object';
  return typeof value;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The values table in the helm-docs layout: every setting that is a value (not a section), with its type, default and comment. */
export function valuesTable(file = join(CHART_DIR, 'values.yaml')): string {
  const rows = valueSettings(file)
    .filter((s) => !s.section)
    .map((s) => `| ${s.key} | ${typeOf(s.value)} | \`${cell(JSON.stringify(s.value))}\` | ${cell(s.comment).replace(/</g, '&lt;')} |`);
  return ['| Key | Type | Default | Description |', '|-----|------|---------|-------------|', ...rows].join('\n');
}
