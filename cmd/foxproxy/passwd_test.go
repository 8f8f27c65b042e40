package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/console"
)

// passwd prints a hash the console accepts for the password on stdin's
// first line, and only for it; the password itself is not printed.
func TestPasswdPrintsAVerifiableHash(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := passwdCmd(nil, strings.NewReader("tr0ub4dor&3\r\nignored second line\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	h := strings.TrimSpace(out.String())
	if err := console.CheckHash(h); err != nil {
		t.Fatalf("hash %q: %v", h, err)
	}
	if !console.VerifyPassword(h, "tr0ub4dor&3") || console.VerifyPassword(h, "tr0ub4dor&3\r") || console.VerifyPassword(h, "ignored second line") {
		t.Fatal("the hash does not verify exactly the first line")
	}
	if strings.Contains(out.String()+errOut.String(), "tr0ub4dor") {
		t.Fatal("the password was printed")
	}
}

func TestPasswdRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
		want  string
	}{
		{nil, "", 1, "no password on standard input"},
		{nil, "\n", 1, "no password on standard input"},
		{nil, strings.Repeat("x", 5000), 1, "longer than 1024 bytes"},
		{[]string{"secret"}, "", 2, `unexpected argument "secret"`},
	} {
		var out, errOut bytes.Buffer
		code := passwdCmd(tc.args, strings.NewReader(tc.stdin), &out, &errOut)
		if code != tc.code || out.Len() != 0 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v %q: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, tc.stdin[:min(len(tc.stdin), 10)], code, out.String(), errOut.String(), tc.code, tc.want)
		}
	}
}
