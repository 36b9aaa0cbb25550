// google.protobuf.Struct, Value, Timestamp and Duration <-> plain JavaScript.
//
// proto-loader decodes these as ordinary messages. Two things to know:
// - protobufjs bundles its own definitions of the well-known types, with camelCase
//   field names (numberValue, structValue, ...) even when keepCase is true;
// - with `longs: String`, int64 fields such as Timestamp.seconds arrive as decimal
//   strings, so nothing loses precision above 2^53.

/** A plain JSON value as a google.protobuf.Value message. */
export function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value) };
  throw new TypeError(`not representable in a google.protobuf.Value: ${typeof value}`);
}

/** A plain JSON object as a google.protobuf.Struct message. */
export function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])) };
}

/** A decoded google.protobuf.Value (loaded with `oneofs: true`) as a plain JSON value. */
export function fromValue(value) {
  switch (value.kind) {
    case 'nullValue':
      return null;
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'listValue':
      return (value.listValue.values ?? []).map(fromValue);
    case 'structValue':
      return fromStruct(value.structValue);
    default:
      throw new TypeError(`google.protobuf.Value without a kind: ${JSON.stringify(value)}`);
  }
}

/** A decoded google.protobuf.Struct as a plain JSON object (an unset Struct gives null). */
export function fromStruct(struct) {
  if (!struct) return null;
  return Object.fromEntries(Object.entries(struct.fields ?? {}).map(([key, value]) => [key, fromValue(value)]));
}

/** Fractional seconds for the JSON mapping: 0, 3, 6 or 9 digits, as protobuf prints them. */
function fraction(nanos) {
  if (!nanos) return '';
  const digits = String(nanos).padStart(9, '0');
  if (nanos % 1_000_000 === 0) return `.${digits.slice(0, 3)}`;
  if (nanos % 1_000 === 0) return `.${digits.slice(0, 6)}`;
  return `.${digits}`;
}

/** A decoded google.protobuf.Timestamp as RFC 3339 in UTC with full precision, or null when unset. */
export function timestampToString(timestamp) {
  if (!timestamp) return null;
  const whole = new Date(Number(timestamp.seconds) * 1000).toISOString().slice(0, 19);
  return `${whole}${fraction(timestamp.nanos)}Z`;
}

/** A decoded google.protobuf.Timestamp as a Date (millisecond precision), or null when unset. */
export function timestampToDate(timestamp) {
  if (!timestamp) return null;
  return new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1_000_000));
}

/** A decoded google.protobuf.Duration in its JSON form ("1.500s"), or null when unset. */
export function durationToString(duration) {
  if (!duration) return null;
  const seconds = BigInt(duration.seconds);
  const negative = seconds < 0n || duration.nanos < 0;
  const absolute = seconds < 0n ? -seconds : seconds;
  return `${negative ? '-' : ''}${absolute}${fraction(Math.abs(duration.nanos))}s`;
}

/** Seconds (a number) as a google.protobuf.Duration message. */
export function secondsToDuration(seconds) {
  const whole = Math.trunc(seconds);
  return { seconds: String(whole), nanos: Math.round((seconds - whole) * 1e9) };
}
