// Package bench measures foxproxy against the wire's limit: Postfix's
// smtp-source sending to smtp-sink directly (the baseline) and through
// foxproxy, on loopback, with the checks off, with ERS and WRS against
// rbldnsd, and with clamd and c-icap scanning.
//
// It is a benchmark, not a test: everything lives in files behind the
// "bench" build tag, so "go test ./..." (CI) never runs it. Run it with
//
//	./bench/run.sh            # the whole measurement, 7-12 minutes
//	./bench/run.sh --quick    # one run per row, fewer messages, ~2 minutes
//
// which installs the daemons (scripts/install-test-deps.sh), then runs
// "go test -tags bench -run TestBench ./bench/" and writes the table to
// bench/results/YYYY-MM-DD.md. README.md in this directory describes the
// method and the last results.
package bench
