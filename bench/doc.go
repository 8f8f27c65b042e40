// Package bench measures foxproxy against the wire's limit: Postfix's
// smtp-source sending to smtp-sink directly (the baseline) and through
// foxproxy, on loopback, with the checks off, with ERS and WRS against
// rbldnsd, with clamd and c-icap scanning, and quarantining every message
// into the file store and into PostgreSQL; each with kept sessions and with
// a new session per message.
//
// It is a benchmark, not a test: everything lives in files behind the
// "bench" build tag, so "go test ./..." (CI) never runs it. Run it with
//
//	./bench/run.sh            # the whole measurement, 20-35 minutes
//	./bench/run.sh --quick    # one run per row, fewer messages, ~5 minutes
//
// which installs the daemons (scripts/install-test-deps.sh), then runs
// "go test -tags bench -run TestBench ./bench/" and writes the table to
// bench/results/YYYY-MM-DD.md. README.md in this directory describes the
// method and the last results.
package bench
