package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("listen: 127.0.0.1:2525\n"), 0o644)
	os.WriteFile(bad, []byte("listen: 127.0.0.1:2525\nlimits:\n  max_recipients: -1\n"), 0o644)
	cases := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"version"}, 0, "foxproxy ", ""},
		{[]string{"check-config"}, 0, "(default): configuration OK", ""},
		{[]string{"check-config", "-config", good}, 0, "good.yaml: configuration OK", ""},
		{[]string{"check-config", "-config", bad}, 1, "", "bad.yaml:3: limits.max_recipients: must be positive"},
		{[]string{"-config", bad}, 2, "", "refusing to start: " + bad + ":3"},
		{[]string{"check-config", "-config", filepath.Join(dir, "missing.yaml")}, 1, "", "no such file"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
			t.Errorf("foxproxy %v: code %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, out.String(), errOut.String(), tc.code, tc.out, tc.errOut)
		}
	}
}
