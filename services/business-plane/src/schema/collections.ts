// The business-plane collections of the contract, as Directus REST payloads. Used once to generate
// schema/snapshot.yaml with a real Directus (npm run schema:snapshot); instances get the schema by
// `directus schema apply` of that committed file, never from here.

const primaryKey = {
  field: 'id',
  type: 'integer',
  meta: { hidden: true, readonly: true, interface: 'input' },
  schema: { is_primary_key: true, has_auto_increment: true },
};

function text(field: string, schema: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Record<string, unknown> {
  return { field, type: 'string', meta: { interface: 'input', ...meta }, schema: { max_length: 255, ...schema } };
}

function timestamp(field: string): Record<string, unknown> {
  return { field, type: 'timestamp', meta: { interface: 'datetime' }, schema: {} };
}

function manyToOne(field: string, note: string): Record<string, unknown> {
  return {
    field,
    type: 'integer',
    meta: { interface: 'select-dropdown-m2o', special: ['m2o'], required: true, note },
    schema: { is_nullable: false },
  };
}

export const COLLECTIONS = [
  {
    collection: 'events',
    meta: { icon: 'flag', note: 'A race or rally: what a viewer subscribes to.', display_template: '{{name}}' },
    schema: {},
    fields: [
      primaryKey,
      text('name', { is_nullable: false }, { required: true }),
      text('status', { default_value: 'scheduled' }),
      timestamp('starts_at'),
      timestamp('ends_at'),
    ],
  },
  {
    collection: 'devices',
    meta: { icon: 'gps_fixed', note: 'A Teltonika tracker, identified by its IMEI.', display_template: '{{name}} ({{imei}})' },
    schema: {},
    fields: [primaryKey, text('imei', { is_unique: true, is_nullable: false, max_length: 20 }, { required: true }), text('name')],
  },
  {
    collection: 'entries',
    meta: {
      icon: 'directions_car',
      note: 'A device taking part in an event, with its label (start number or crew).',
      display_template: '{{label}}',
    },
    schema: {},
    fields: [primaryKey, manyToOne('event', 'The event'), manyToOne('device', 'The tracker'), text('label')],
  },
];

export const RELATIONS = [
  { collection: 'entries', field: 'event', related_collection: 'events', meta: {}, schema: { on_delete: 'CASCADE' } },
  { collection: 'entries', field: 'device', related_collection: 'devices', meta: {}, schema: { on_delete: 'CASCADE' } },
];
