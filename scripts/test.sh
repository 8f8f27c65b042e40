#!/usr/bin/env bash
# foxproxy's whole test suite, exactly as CI runs it (.ci/run calls this):
#   ./scripts/test.sh
# It installs the real daemons the integration tests drive (Postfix, swaks,
# rbldnsd, clamd, c-icap; Debian packages, via apt-get, only when missing),
# then checks formatting and vet, then runs every test with the race
# detector and in a random order (-shuffle=on; the seed is printed, and
# -shuffle=SEED repeats an order): unit tests and the integration suite
# against real Postfix.
# Needs root (apt-get, and private Postfix instances run as root) and Go.
# Extra arguments go to `go test`, e.g. ./scripts/test.sh -run Postfix ./integration/
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh

echo "test: gofmt"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
    echo "gofmt would change:" $unformatted >&2
    exit 1
fi
echo "test: go vet"
go vet ./...

if [ $# -gt 0 ]; then
    exec go test -race -shuffle=on -count=1 -timeout 40m "$@"
fi
echo "test: go test -race -shuffle=on ./..."
go test -race -shuffle=on -count=1 -timeout 40m ./...
