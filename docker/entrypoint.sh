#!/bin/bash
# The serving image's default command (the Dockerfile's CMD): tritonserver with the Helm chart's
# default flags, the admin APIs restricted as the chart restricts them. A plain `docker run`
# answers 403 on model-repository, shared-memory, trace and logging without `admin-key: <key>`.
#
#   ADMIN_KEY_FILE       a file holding the key (a mounted secret): preferred, since a variable
#                        passed with `docker run -e` shows in `docker inspect`
#   ADMIN_KEY            the key itself
#   (neither)            a random key, written to /tmp/tritonctl-admin-key (mode 0600) and never
#                        printed: `docker exec <container> cat /tmp/tritonctl-admin-key`
#   TRITON_LOAD_MODELS   models to load, space-separated (default: the chart's server.loadModels)
#
# Arguments are appended to tritonserver's (later flags win). The key is on tritonserver's command
# line, which only processes inside the container can read (they run as the same user).
set -euo pipefail

key="${ADMIN_KEY:-}"
if [[ -z "$key" && -n "${ADMIN_KEY_FILE:-}" ]]; then
  key="$(<"$ADMIN_KEY_FILE")"
fi
if [[ -z "$key" ]]; then
  umask 077
  key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
  printf "%s\n" "$key" >"${TMPDIR:-/tmp}/tritonctl-admin-key"
  echo "tritonctl: admin key written to ${TMPDIR:-/tmp}/tritonctl-admin-key" >&2
fi

apis=model-repository,shared-memory,trace,logging
args=(
  --model-repository=/models
  --model-control-mode=explicit
)
for model in ${TRITON_LOAD_MODELS:-tokenizer text_encoder pooling text_embedding}; do
  args+=("--load-model=$model")
done
args+=(
  --strict-readiness=true
  --http-port=8000
  --grpc-port=8001
  --metrics-port=8002
  --allow-metrics=true
  --allow-cpu-metrics=true
  --metrics-config=summary_latencies=true
  --cache-config=local,size=268435456
  --exit-timeout-secs=30
  --log-verbose=0
  "--http-restricted-api=$apis:admin-key=$key"
  "--grpc-restricted-protocol=$apis:admin-key=$key"
)
exec tritonserver "${args[@]}" "$@"
