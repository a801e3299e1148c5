#!/usr/bin/env bash
# One AWS SDK generation: every aws-* crate of the workspace on the same smithy runtime, and no
# http 0.2 (the previous generation's HTTP types) in anything that ships. One TLS stack: one rustls
# (reqwest takes busline's rustls configuration only if it is the same crate, `busline::tls`), and
# no ring beside aws-lc-rs in any function. Fails naming what came back.
#
# The test kit alone may carry http 0.2: aws-sdk-cloudwatch itself depends on aws-smithy-types'
# http-body 0.4 bridge (its request compression), and only the observability test reads CloudWatch.
set -euo pipefail
cd "$(dirname "$0")/../.."

status=0
twice=$(cargo tree --workspace -d -e normal,build,dev --target x86_64-unknown-linux-gnu --target aarch64-unknown-linux-gnu --depth 0 --prefix none | grep -E '^aws-' | sort -u || true)
if [ -n "$twice" ]; then
  echo "two generations of the AWS SDK (cargo tree -d):"
  echo "$twice"
  status=1
fi
for dir in functions/*/; do
  name=$(basename "$dir")
  tree=$(cargo tree -p "$name" -e normal,build --target x86_64-unknown-linux-gnu --target aarch64-unknown-linux-gnu --prefix none | sed 's/ (\*)$//')
  old=$(grep -E '^http v0\.' <<<"$tree" | sort -u | head -n1 || true)
  if [ -n "$old" ]; then
    echo "$name ships $old; cargo tree -p $name -e normal -i ${old// v/@} shows who brings it"
    status=1
  fi
  if grep -qE '^ring v' <<<"$tree"; then
    echo "$name ships ring beside aws-lc-rs; cargo tree -p $name -e normal -i ring shows who brings it"
    status=1
  fi
done
tls_twice=$(cargo tree --workspace -d -e normal --target x86_64-unknown-linux-gnu --target aarch64-unknown-linux-gnu --depth 0 --prefix none | grep -E '^rustls v' | sort -u || true)
if [ -n "$tls_twice" ]; then
  echo "two versions of rustls (cargo tree -d):"
  echo "$tls_twice"
  status=1
fi
[ "$status" = 0 ] && echo "one AWS SDK generation; no http 0.2 in any function; one rustls, and no ring in any function"
exit "$status"
