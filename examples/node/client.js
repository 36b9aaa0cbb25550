#!/usr/bin/env node
// A Node.js client of missions.v1.MissionService that loads proto/ at run time (no
// generated code). It submits a mission (echo by default), watches its events until
// the stream ends, then resumes a watch after the first event's sequence. Output: one
// JSON object per line on stdout (see README.md).

import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { durationToString, fromStruct, timestampToString, toStruct } from './wellknown.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const { values: options } = parseArgs({
  options: {
    target: { type: 'string', default: process.env.MISSIONS_TARGET ?? '127.0.0.1:50051' },
    proto: { type: 'string', default: path.resolve(here, '../../proto') },
    key: { type: 'string', default: `node-example-${randomUUID()}` },
    'correlation-id': { type: 'string', default: `node-${randomUUID()}` },
    type: { type: 'string', default: 'echo' },
    payload: { type: 'string' },
  },
});

const LOADER_OPTIONS = {
  includeDirs: [options.proto],
  keepCase: true, // field names as in the .proto (mission_id, after_sequence)
  longs: String, // uint64 sequences as decimal strings: exact beyond 2^53
  enums: String, // enum values by name ('EVENT_TYPE_COMPLETED')
  defaults: true, // unset scalars read as their zero value, as in the other languages
  oneofs: true, // event.details names the member that is set ('completed'); Value.kind too
};

// Unary calls get a deadline: SubmitMission may wait up to 10 s for the broker's confirm
// and 5 s more for read-your-writes. WatchEvents gets none (it lasts as long as the mission).
const UNARY_DEADLINE_MS = 20_000;
// Set on a WatchEvents stream the server cut (too slow a reader, or the replica stopping).
const LAST_SEQUENCE_TRAILER = 'missions-last-sequence';
// Every kind of google.protobuf.Value: the echo handler sends it back as the result.
const DEFAULT_PAYLOAD = {
  text: 'hello from node',
  count: 42,
  ratio: 0.25,
  ok: true,
  missing: null,
  tags: ['grpc-js', 'proto-loader'],
  nested: { list: [1, 'two', { three: 3 }], empty: {} },
};

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function loadClient(target) {
  const definition = protoLoader.loadSync('missions/v1/mission_service.proto', LOADER_OPTIONS);
  const { MissionService } = grpc.loadPackageDefinition(definition).missions.v1;
  return new MissionService(target, grpc.credentials.createInsecure());
}

// The bearer token, when the service authenticates callers (--tokens-file). Read from
// the environment rather than a flag, which other users of the machine could see.
const TOKEN = process.env.MISSIONS_TOKEN ?? '';

/** Metadata for every call: the bearer token, if any. */
function callMetadata() {
  const metadata = new grpc.Metadata();
  if (TOKEN) metadata.set('authorization', `Bearer ${TOKEN}`);
  return metadata;
}

function unary(client, method, request, metadata = callMetadata()) {
  const deadline = Date.now() + UNARY_DEADLINE_MS;
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** SubmitMission, retried on UNAVAILABLE and DEADLINE_EXCEEDED: safe because the request has an idempotency key. */
async function submit(client, request, correlationId) {
  const metadata = callMetadata();
  metadata.set('x-correlation-id', correlationId);
  for (let attempt = 1; ; attempt += 1) {
    try {
      return (await unary(client, 'SubmitMission', request, metadata)).mission;
    } catch (error) {
      const retryable = error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED;
      if (!retryable || attempt === 5) throw error;
      await sleep(Math.min(2000, 100 * 2 ** attempt) * Math.random());
    }
  }
}

/**
 * Whether a failed WatchEvents stream may be reopened: UNAVAILABLE (connection lost or
 * replica stopping), or RESOURCE_EXHAUSTED with the resume position in the trailer (a
 * reader too slow). Other RESOURCE_EXHAUSTED refusals, such as too many open streams,
 * would only fail again.
 */
function resumable(error, trailer) {
  if (error.code === grpc.status.UNAVAILABLE) return true;
  return error.code === grpc.status.RESOURCE_EXHAUSTED && trailer !== undefined;
}

/** The later of a position (a BigInt, or null for none) and a sequence given as a string. */
function later(position, sequence) {
  const candidate = BigInt(sequence);
  return position === null || candidate > position ? candidate : position;
}

/**
 * The events of a WatchEvents stream until it ends with OK. A resumable failure reopens
 * the stream with after_sequence = the last position seen (from events, heartbeats or
 * the missions-last-sequence trailer), so nothing is lost and nothing repeats.
 */
async function* watch(client, request) {
  let position = request.after_sequence === undefined ? null : BigInt(request.after_sequence);
  // Consecutive failures without a response in between; five in a row give up.
  let failures = 0;
  for (;;) {
    const metadata = callMetadata();
    // A reopened stream waits for the service to be reachable again (a replica
    // restarting) instead of failing at once.
    if (failures > 0) metadata.setOptions({ waitForReady: true });
    const call = client.WatchEvents(
      position === null ? request : { ...request, after_sequence: String(position) },
      metadata,
    );
    try {
      for await (const response of call) {
        failures = 0;
        if (response.event) {
          position = BigInt(response.event.sequence);
          yield response.event;
        } else if (response.heartbeat) {
          // No event, but everything up to last_sequence has been delivered: a quiet
          // filter's resume position still advances.
          position = later(position, response.heartbeat.last_sequence);
        }
      }
      return;
    } catch (error) {
      const [trailer] = error.metadata?.get(LAST_SEQUENCE_TRAILER) ?? [];
      failures += 1;
      if (!resumable(error, trailer) || failures === 5) throw error;
      if (trailer !== undefined) position = later(position, trailer);
      const after = position === null ? null : String(position);
      emit({ kind: 'resuming', code: grpc.status[error.code], after_sequence: after });
      await sleep(Math.min(2000, 100 * 2 ** failures) * Math.random());
    }
  }
}

function describeMission(mission) {
  return {
    id: mission.id,
    type: mission.type,
    state: mission.state,
    priority: mission.priority,
    labels: mission.labels,
    idempotency_key: mission.idempotency_key,
    correlation_id: mission.correlation_id,
    submitted_by: mission.submitted_by,
    payload: fromStruct(mission.payload),
    create_time: timestampToString(mission.create_time),
    last_sequence: mission.last_sequence,
  };
}

function describeEvent(stream, event) {
  const record = {
    kind: 'event',
    stream,
    id: event.id,
    sequence: event.sequence,
    mission_id: event.mission_id,
    type: event.type,
    details: event.details,
    time: timestampToString(event.time),
    attempt: event.attempt,
    generation: event.generation,
    correlation_id: event.correlation_id,
  };
  if (event.details === 'started') record.worker_id = event.started.worker_id;
  if (event.details === 'completed') {
    record.result = fromStruct(event.completed.result);
    record.duration = durationToString(event.completed.duration);
  }
  if (event.details === 'failed' || event.details === 'retrying') record.error = event[event.details].error;
  return record;
}

async function main() {
  const client = loadClient(options.target);
  try {
    const payload = options.payload === undefined ? DEFAULT_PAYLOAD : JSON.parse(options.payload);
    const request = {
      type: options.type,
      payload: toStruct(payload),
      labels: { client: 'node', example: 'true' },
      idempotency_key: options.key,
    };
    const mission = await submit(client, request, options['correlation-id']);
    emit({ kind: 'submitted', mission: describeMission(mission) });
    // The same key and request again: the original mission, nothing new queued.
    const again = await submit(client, request, options['correlation-id']);
    emit({ kind: 'resubmitted', mission: describeMission(again) });

    // Snapshot then follow: every event of the mission, ending with OK after its final one.
    const events = [];
    for await (const event of watch(client, { mission_ids: [mission.id] })) {
      events.push(event);
      emit(describeEvent('watch', event));
    }
    emit({ kind: 'end', stream: 'watch', code: 'OK', events: events.length });

    // Resume after the first event: exactly the later ones, in order.
    const afterSequence = events[0].sequence;
    let resumed = 0;
    for await (const event of watch(client, { mission_ids: [mission.id], after_sequence: afterSequence })) {
      resumed += 1;
      emit(describeEvent('resume', event));
    }
    emit({ kind: 'end', stream: 'resume', code: 'OK', after_sequence: afterSequence, events: resumed });
  } finally {
    client.close();
  }
}

main().catch((error) => {
  const code = error.code === undefined ? null : grpc.status[error.code];
  emit({ kind: 'error', code, message: error.details ?? error.message });
  process.exitCode = 1;
});
