package config

import (
	"strings"
	"testing"
)

// Regression (issue 9, found by FuzzParse): yaml gives no line for what
// its reader refuses (bad UTF-8, control characters) nor for a problem on
// the first line, and such files were refused without any location.
func TestYAMLErrorsWithoutLineGetOne(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`"`, "bad.yaml:1: "},
		{"listen: 127.0.0.1:1\nhostname: \x01\n", "bad.yaml:2: "},
		{"listen: 127.0.0.1:1\r\nhostname: a\r\nx: \xff\xfe\n", "bad.yaml:3: "},
		{"\xff\xfe\x00listen: x\n", "bad.yaml:1: "},
		{"a: b\rc: \x02", "bad.yaml:2: "},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.yaml), "bad.yaml")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v, want an error starting %q", tc.yaml, err, tc.want)
		}
	}
}
