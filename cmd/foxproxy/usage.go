package main

import (
	"fmt"
	"io"
	"strings"
)

// command is one line of foxproxy's usage: what a new user sees with
// "foxproxy help", "foxproxy -h" or a mistyped command.
type command struct {
	name     string // as typed
	synopsis string // its arguments
	summary  string
}

// commands lists every command run dispatches, in the order a new user
// meets them. TestUsageListsEveryCommand keeps it and run in step.
var commands = []command{
	{"run", "[-config FILE]", "run the filter (the default command)"},
	{"check-config", "[-config FILE]", "validate a configuration"},
	{"status", "[-admin URL] [-json]", "the running foxproxy's dependencies"},
	{"healthcheck", "[-admin URL]", "exit 0 when the running foxproxy is ready"},
	{"quarantine", "list|show|release|delete|purge|import", "quarantined and held mail"},
	{"policy", "test ... MESSAGE.eml", "dry-run the checks and rules on a message"},
	{"update", "[-config FILE]", "fetch the list bundle now"},
	{"bundle", "keygen|sign ...", "make a key pair, sign a list bundle"},
	{"db", "migrate [-config FILE]", "apply the custody database's schema migrations"},
	{"passwd", "< FILE", "hash a web console password (console.users)"},
	{"version", "", "print the version"},
	{"help", "", "print this list of commands"},
}

// printUsage writes the list of commands, one line each.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: foxproxy [COMMAND] [ARGUMENTS]")
	fmt.Fprintln(w, "foxproxy is an SMTP content filter for Postfix. Commands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(usageHead(c)))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, usageHead(c), c.summary)
	}
	fmt.Fprintln(w, "Exit status: 0 success, 1 failure, 2 usage error.")
}

func usageHead(c command) string {
	return strings.TrimSpace(c.name + " " + c.synopsis)
}

// isHelpFlag tells a request for help given as a flag.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}
