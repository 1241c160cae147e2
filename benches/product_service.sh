#!/usr/bin/env bash
# The product service example (examples/product_service.rs) under a real
# HTTP/1.1 load generator, h2load --h1 (Debian's nghttp2-client), in three
# runs: no cache, the remote cache only, the near cache + the remote one.
# Each run starts the release binary afresh (its own embedded, empty cache
# server), so every run starts cold. Product popularity is Zipf.
#
# It prints, per run: requests/s, p50 and p99 latency, and database queries
# per request (the service's /metrics counter over the requests served).
#
#   bash benches/product_service.sh
#   DURATION_S=20 CONNECTIONS=64 bash benches/product_service.sh
#
# Settings (environment): DURATION_S (10), CONNECTIONS (32, one h2load per
# connection, see below), THREADS (the service's request threads, 32),
# PRODUCTS (catalogue size, 100000), ZIPF_S (Zipf exponent, 1.0), MODES
# ("none remote near").
#
# Why one h2load process per connection: h2load gives every client of a
# process the same URI list from its first line, so 32 clients of one
# process would ask for the same products in lockstep, and single flight
# would fold 32 "users" into one. One process per connection, each with its
# own Zipf stream (its own seed), keeps the connections independent.
#
# Loopback only; bounded by DURATION_S per run; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION_S=${DURATION_S:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-32}
PRODUCTS=${PRODUCTS:-100000}
ZIPF_S=${ZIPF_S:-1.0}
MODES=${MODES:-"none remote near"}
# Enough URIs that no connection wraps around its list within a run.
URIS_PER_CONNECTION=${URIS_PER_CONNECTION:-50000}
FEATURES=server,serde,near-cache,metrics

if ! command -v h2load >/dev/null; then
  echo "h2load not found: installing Debian's nghttp2-client" >&2
  { apt-get update -qq && apt-get install -y -qq nghttp2-client; } >&2 || true
fi
if ! command -v h2load >/dev/null; then
  echo "error: h2load (Debian package nghttp2-client) is required and could not be installed; no figures" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "error: python3 is required (Zipf lists, percentiles)" >&2; exit 1; }

cargo build --release --quiet --example product_service --features "$FEATURES"
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary="$target_dir/release/examples/product_service"

work=$(mktemp -d)
service_pid=
cleanup() {
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# One Zipf-distributed URI list per connection: product ids 1..PRODUCTS,
# id k with probability proportional to 1/k^s; seeded, so reruns ask for
# the same products in the same order.
python3 - "$work" "$CONNECTIONS" "$URIS_PER_CONNECTION" "$PRODUCTS" "$ZIPF_S" <<'EOF'
import bisect, itertools, random, sys
work, connections, count, products, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cumulative = list(itertools.accumulate(1.0 / k**s for k in range(1, products + 1)))
total = cumulative[-1]
for connection in range(connections):
    rng = random.Random(21_000 + connection)
    with open(f"{work}/uris.{connection}", "w") as out:
        for _ in range(count):
            # The first URI names the host; h2load's -i lists after the first
            # line may be paths alone. The host is filled in per run.
            out.write(f"/product/{bisect.bisect_left(cumulative, rng.random() * total) + 1}\n")
EOF

# GET http://$1$2, body on stdout (no curl needed).
http_get() {
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://$1$2"
}

rows=()
for mode in $MODES; do
  "$binary" --listen 127.0.0.1:0 --cache "$mode" --threads "$THREADS" >"$work/service.out" 2>"$work/service.err" &
  service_pid=$!
  address=
  for _ in $(seq 100); do
    address=$(head -n 1 "$work/service.out")
    [ -n "$address" ] && break
    sleep 0.1
  done
  [ -n "$address" ] || { echo "error: the service did not start:" >&2; cat "$work/service.err" >&2; exit 1; }

  pids=()
  for connection in $(seq 0 $((CONNECTIONS - 1))); do
    { echo "http://$address$(head -n 1 "$work/uris.$connection")"; tail -n +2 "$work/uris.$connection"; } >"$work/run.$connection"
    h2load --h1 -c 1 -D "$DURATION_S" -i "$work/run.$connection" \
      --log-file "$work/log.$mode.$connection" >"$work/h2load.$mode.$connection" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "error: h2load failed" >&2; exit 1; }; done

  queries=$(http_get "$address" /metrics | awk '$1 == "product_service_database_queries_total" { print $2 }')
  kill "$service_pid"; wait "$service_pid" 2>/dev/null || true; service_pid=

  row=$(python3 - "$work" "$mode" "$CONNECTIONS" "$DURATION_S" "${queries:-0}" <<'EOF'
import re, sys
work, mode, connections, duration, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(float(sys.argv[5]))
ok = failed = 0
rate = 0.0
latencies = []
for connection in range(connections):
    report = open(f"{work}/h2load.{mode}.{connection}").read()
    rate += float(re.search(r"finished in .*?, ([0-9.]+) req/s", report).group(1))
    done = re.search(r"requests: .*?(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", report)
    ok += int(done.group(1))
    failed += sum(int(done.group(i)) for i in (2, 3, 4))
    for line in open(f"{work}/log.{mode}.{connection}"):
        _, status, micros = line.split("\t")
        if status == "200":
            latencies.append(int(micros))
latencies.sort()
def percentile(p):
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000 if latencies else float("nan")
name = {"none": "no cache", "remote": "remote only", "near": "near + remote"}[mode]
print(f"| {name} | {rate:,.0f} | {percentile(0.50):.2f} | {percentile(0.99):.2f} | {queries / max(ok, 1):.4f} | {ok:,} | {failed} | {queries:,} |")
EOF
)
  rows+=("$row")
  echo "done: $row" >&2
done

echo
echo "product_service: $CONNECTIONS connections (one h2load --h1 each), ${DURATION_S} s per run, $THREADS request threads,"
echo "Zipf s=$ZIPF_S over $PRODUCTS products, database 5 ms per query, embedded cache server, $(nproc) cores"
echo
echo "| cache | requests/s | p50 ms | p99 ms | database queries / request | requests | failed | database queries |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
