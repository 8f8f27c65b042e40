#!/usr/bin/env bash
# foxproxy's throughput benchmark: Postfix's smtp-source → smtp-sink on
# loopback, straight (the baseline) and through foxproxy with no checks, with
# ERS+WRS against rbldnsd (warm and cold cache), with clamd and with c-icap,
# and quarantining every message into the file store and into PostgreSQL
# (a private PostgreSQL 15, started on a loopback port with its default
# durability settings); each with kept sessions (smtp-source -d) and with a
# new session per message, side by side in the same rounds; 10 KB and 1 MB
# messages at concurrency 1 and 20; plus the memory targets and the cached
# DNS-list lookup. See bench/README.md for the method.
#
#   ./bench/run.sh                    # full run, 20-35 minutes (5 runs per row)
#   ./bench/run.sh --quick            # one run per row, fewer messages (~5 minutes)
#   ./bench/run.sh --out FILE         # default: bench/results/YYYY-MM-DD.md
#   ./bench/run.sh --profile[=DIR]    # also CPU and allocation profiles (pprof)
#   ./bench/run.sh --only REGEXP      # only rows whose "10k/c20/pass/new" matches (baselines always;
#                                     # the last part is kept or new, the session pattern),
#                                     # e.g. --only '/q(file|db)/': the quarantine rows
#   ./bench/run.sh --no-install       # skip scripts/install-test-deps.sh
#
# Environment, for trying things: FOXBENCH_RUNS (measured runs per row, default 5),
# FOXBENCH_SECONDS (aimed length of a run, default 3), FOXBENCH_SKIP_MEMORY=1 (no memory
# targets and no go test -bench).
#
# Needs root (the daemons' packages are installed with apt-get when missing,
# and smtp-sink, rbldnsd and c-icap start as root and drop privileges) and Go.
# Every process it starts is stopped by its PID when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

out=""
install=1
export FOXBENCH_QUICK="" FOXBENCH_PROFILE="" FOXBENCH_ONLY="${FOXBENCH_ONLY:-}"
while [ $# -gt 0 ]; do
    case "$1" in
    -q | --quick) FOXBENCH_QUICK=1 ;;
    -o | --out) out=${2:?--out needs a file}; shift ;;
    --out=*) out=${1#--out=} ;;
    --profile) FOXBENCH_PROFILE="$root/bench/results/profiles-$(date +%Y-%m-%d)" ;;
    --profile=*) FOXBENCH_PROFILE=${1#--profile=} ;;
    --only) FOXBENCH_ONLY=${2:?--only needs a regexp}; shift ;;
    --only=*) FOXBENCH_ONLY=${1#--only=} ;;
    --no-install) install="" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

[ -n "$out" ] || out="bench/results/$(date +%Y-%m-%d).md"
case "$out" in /*) ;; *) out="$root/$out" ;; esac
case "$FOXBENCH_PROFILE" in "" | /*) ;; *) FOXBENCH_PROFILE="$root/$FOXBENCH_PROFILE" ;; esac
export FOXBENCH_OUT="$out"

if [ -n "$install" ]; then
    ./scripts/install-test-deps.sh
fi
export PATH=$PATH:/usr/sbin:/sbin # smtp-source, smtp-sink, rbldnsd, clamd
command -v go >/dev/null || { echo "run.sh: go not found (Go 1.26 is needed)" >&2; exit 1; }

# -count=1: never a cached result. The bench build tag keeps all of this out
# of "go test ./...".
go test -tags bench -run '^TestBench$' -count=1 -timeout 60m -v ./bench/
