package main

import (
	"bytes"
	"strings"
	"testing"
)

// A request for help prints every command, one line each, on stdout.
func TestHelpListsCommands(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}, {"-config", "x.yaml", "-h"}} {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		if code != 0 || errOut.Len() != 0 {
			t.Errorf("foxproxy %v: code %d, stderr %q; want 0 and nothing", args, code, errOut.String())
		}
		checkUsage(t, args, out.String())
	}
}

// A wrong command or flag prints what was wrong and the commands on
// stderr, and exits 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `foxproxy: unknown command "frobnicate"`},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"run", "--nope"}, "flag provided but not defined: -nope"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != 2 || out.Len() != 0 || !strings.HasPrefix(errOut.String(), tc.want) {
			t.Errorf("foxproxy %v: code %d, stdout %q, stderr %q; want 2, nothing, %q first",
				tc.args, code, out.String(), errOut.String(), tc.want)
		}
		checkUsage(t, tc.args, errOut.String())
	}
}

// Every command the usage lists is one run knows.
func TestUsageListsOnlyKnownCommands(t *testing.T) {
	for _, c := range commands {
		var out, errOut bytes.Buffer
		run([]string{c.name, "-h"}, &out, &errOut)
		if strings.Contains(errOut.String(), `unknown command "`+c.name+`"`) {
			t.Errorf("usage lists %q, which run does not know", c.name)
		}
	}
}

func checkUsage(t *testing.T, args []string, text string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	for _, c := range commands {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			found = found || len(f) > 1 && f[0] == c.name && strings.Contains(l, c.summary)
		}
		if !found {
			t.Errorf("foxproxy %v: no line for %q in\n%s", args, c.name, text)
		}
	}
}
