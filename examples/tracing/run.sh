#!/usr/bin/env bash
# Start mission-service and mission-worker with --tracing console, submit one mission
# from a traced client, stop both (which flushes their spans), and print the trace.
# Needs RabbitMQ on localhost (scripts/up) and `pip install -e '.[tracing]'`.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
out=$(mktemp -d)
export MISSIONS_NAMESPACE=tracing-example MISSIONS_LISTEN=127.0.0.1:50071 MISSIONS_STATE_DIR=$out/state
export MISSIONS_TRACING=console
# Spans go to stdout, logs to stderr.
"$python" -m mission_service >"$out/service.spans" 2>"$out/service.log" & service=$!
"$python" -m worker_service >"$out/worker.spans" 2>"$out/worker.log" & worker=$!
trap 'kill $service $worker 2>/dev/null || true' EXIT
trace=$("$python" examples/tracing/client.py --server "$MISSIONS_LISTEN" 2>"$out/client.spans")
kill -TERM "$worker" "$service"
wait "$worker" "$service" || true
"$python" examples/tracing/show_trace.py "$trace" "$out"/client.spans "$out"/service.spans "$out"/worker.spans
echo "every span: $out/*.spans"
