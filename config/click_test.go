package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeKey(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClickConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeKey(t, dir, "k2", strings.Repeat("s", 40)+"\n", 0o600)
	old := writeKey(t, dir, "k1", strings.Repeat("o", 32), 0o400)
	open := writeKey(t, dir, "open", strings.Repeat("s", 40), 0o644)
	short := writeKey(t, dir, "short", "  "+strings.Repeat("s", 31)+"\n\n", 0o600)
	wrs := "wrs: {zones: [{zone: dbl.example.test}]}\n"
	rewrite := "policy: {rules: [{then: deliver, rewrite_links: true}]}\n"

	c, err := Parse([]byte(wrs+rewrite+`click:
  listen: 127.0.0.1:10081
  base_url: https://click.example.org/
  keys: [{id: k2, secret_file: `+good+`}, {id: k1, secret_file: `+old+`}]
  exclude_domains: [example.org]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.Click.LoadKeys()
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || len(keys[0].Secret) != 40 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	if c.Click.OnUnavailable != "warn" || c.Click.MaxLinks != 200 || c.Click.RewriteSigned || c.Click.CheckTimeout.D().Seconds() != 5 {
		t.Fatalf("defaults %+v", c.Click)
	}
	if Default().ClickEnabled() {
		t.Fatal("the default configuration uses the click service")
	}

	for _, tc := range []struct{ name, yaml, want string }{
		{"rule without base_url", wrs + rewrite + "click: {keys: [{id: k, secret_file: " + good + "}]}", "click.base_url: must be set when a rule rewrites links"},
		{"listener without keys", wrs + "click: {listen: 127.0.0.1:1, base_url: https://c.example}", "click.keys: must list at least one key when click.listen is set"},
		{"listener without WRS", "click: {listen: 127.0.0.1:1, base_url: https://c.example, keys: [{id: k, secret_file: " + good + "}]}", "configure wrs.zones"},
		{"missing file", rewrite + "click: {base_url: https://c.example, keys: [{id: k, secret_file: /nonexistent/k}]}", "click.keys[0].secret_file: stat /nonexistent/k: no such file"},
		{"readable by others", rewrite + "click: {base_url: https://c.example, keys: [{id: k, secret_file: " + open + "}]}", "has mode 0644: it must not be readable by group or others"},
		{"short secret", rewrite + "click: {base_url: https://c.example, keys: [{id: k, secret_file: " + short + "}]}", "holds 31 bytes of secret, need at least 32"},
		{"duplicate id", rewrite + "click: {base_url: https://c.example, keys: [{id: k, secret_file: " + good + "}, {id: k, secret_file: " + old + "}]}", `click.keys[1].id: "k" is used by an earlier key`},
		{"bad base url", rewrite + "click: {base_url: \"https://c.example/?a=b\", keys: [{id: k, secret_file: " + good + "}]}", "click.base_url: base URL"},
		{"bad mode", "click: {on_unavailable: maybe}", `click.on_unavailable: "maybe" is not one of warn, allow, block`},
		{"bad exclusion", "click: {exclude_domains: [\"http://x.example/\"]}", "click.exclude_domains[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml+"\n"), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
