package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListsAndUpdateValidation(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "blocked.txt")
	os.WriteFile(f, []byte("192.0.2.1\n"), 0o644)
	const key = "6T1f4/Et/7cAPQTc6O65wHhP8KpIeUOUq0c+3pChe14="
	ok := "lists: {blocked_clients: " + f + "}\nupdate: {url: https://u.example/b.tar.gz, public_key: \"" + key + "\", state_dir: " + dir + "}\n"
	c, err := Parse([]byte(ok), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Lists.Files()["blocked_clients"] != f || !c.Update.Enabled() || c.Update.Interval.D().Hours() != 1 || !c.Lists.Watch {
		t.Errorf("parsed %+v %+v", c.Lists, c.Update)
	}
	if c.Scan.ClamAVMaxAge.D().Hours() != 7*24 {
		t.Errorf("clamav_max_age default %v", c.Scan.ClamAVMaxAge)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"lists: {approved_clients: /nonexistent/x.txt}", "lists.approved_clients: cannot read"},
		{"update: {url: http://u.example/b, public_key: \"" + key + "\"}", "update.url"},
		{"update: {url: https://u.example/b, public_key: abc}", "update.public_key"},
		{"update: {url: https://u.example/b, public_key: \"" + key + "\", state_dir: \"\"}", "update.state_dir"},
		{"update: {interval: 10ms}", "update.interval: must be at least 1s"},
		{"scan: {clamav_max_age: -1s}", "scan.clamav_max_age"},
	} {
		_, err := Parse([]byte(bad.yaml), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
