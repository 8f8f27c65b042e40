package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c := Default()
	if c.Listen != "127.0.0.1:10025" || c.Downstream != "127.0.0.1:10026" {
		t.Fatalf("listen/downstream = %q/%q", c.Listen, c.Downstream)
	}
	if !c.AllowedClients.Contains(netip.MustParseAddr("127.0.0.1")) ||
		!c.AllowedClients.Contains(netip.MustParseAddr("::1")) ||
		c.AllowedClients.Contains(netip.MustParseAddr("192.0.2.1")) {
		t.Fatalf("default allowed_clients must be loopback only: %v", c.AllowedClients)
	}
	if c.MaxMessageBytes != 50<<20 {
		t.Fatalf("max_message_bytes = %d", c.MaxMessageBytes)
	}
	if c.Timeouts.Command.D() != 5*time.Minute {
		t.Fatalf("timeouts.command = %v", c.Timeouts.Command)
	}
	if !c.Proxy().TrustedForXforward().Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("xforward trust must default to allowed_clients")
	}
}

func TestParseOverridesOnlyGivenKeys(t *testing.T) {
	c, err := Parse([]byte("listen: 127.0.0.1:2600\ntimeouts:\n  data: 90s\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:2600" || c.Timeouts.Data.D() != 90*time.Second {
		t.Fatalf("override not applied: %+v", c)
	}
	if c.Timeouts.Command.D() != 5*time.Minute || c.Downstream != "127.0.0.1:10026" {
		t.Fatalf("defaults lost: %+v", c)
	}
}

// Each bad file is refused with the file, the line and the key named.
func TestErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key with hint", "listen: 127.0.0.1:1\nlisten_addr: x\n",
			[]string{"bad.yaml:2: listen_addr: unknown key", `did you mean "listen"`}},
		{"unknown nested key", "timeouts:\n  comand: 1s\n",
			[]string{"bad.yaml:2: timeouts.comand: unknown key", `did you mean "command"`}},
		{"bad duration", "timeouts:\n  data: soon\n",
			[]string{"bad.yaml:2: timeouts.data:", `invalid duration "soon"`}},
		{"negative duration", "timeouts:\n  data: -1s\n",
			[]string{"bad.yaml:2: timeouts.data: must be positive"}},
		{"bad cidr", "allowed_clients:\n  - 127.0.0.0/8\n  - 10.0.0.0/33\n",
			[]string{"bad.yaml:3: allowed_clients[1]:", `invalid network "10.0.0.0/33"`}},
		{"bad size", "max_message_bytes: 10 parsecs\n",
			[]string{"bad.yaml:1: max_message_bytes:", "unknown unit"}},
		{"wrong type", "limits:\n  max_recipients: many\n",
			[]string{"bad.yaml:2: limits.max_recipients:", "cannot unmarshal"}},
		{"bad listen", "listen: nowhere\n",
			[]string{"bad.yaml:1: listen:", "is not host:port"}},
		{"open relay refused", "allowed_clients: []\n",
			[]string{"bad.yaml:1: allowed_clients:", "open relay"}},
		{"yaml syntax", "listen: [\n",
			[]string{"bad.yaml:"}},
		{"mapping expected", "timeouts: 5\n",
			[]string{"bad.yaml:1: timeouts: expected a mapping"}},
		{"duplicate key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
			[]string{"bad.yaml:2: listen:"}},
		{"bad log level", "log:\n  level: loud\n",
			[]string{"bad.yaml:2: log.level:", `"loud"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "bad.yaml")
			if err == nil {
				t.Fatal("bad configuration accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestERSValidation(t *testing.T) {
	cases := map[string]string{
		"ers:\n  zones:\n    - {zone: 'bad zone!'}\n":                             "bad.yaml:3: ers.zones[0].zone:",
		"ers:\n  zones:\n    - {zone: bl.example, codes: {not-an-ip: spam}}\n":    "bad.yaml:3: ers.zones[0].codes:",
		"ers:\n  zones:\n    - {zone: bl.example, codes: {127.0.0.2: 'Spam!'}}\n": "category \"Spam!\"",
		"ers:\n  recheck_interval: -1m\n":                                         "bad.yaml:2: ers.recheck_interval:",
		"ers:\n  recheck_interval: 10ms\n":                                        "at least 1s",
		"ers:\n  budget: 0s\n":                                                    "ers.budget: must be positive",
		"dns:\n  servers: [dns.example.org]\n":                                    "bad.yaml:2: dns.servers[0]:",
		"ers:\n  zones:\n    - {zone: a.example}\n    - {zone: A.example.}\n":     "listed twice",
	}
	for yaml, want := range cases {
		_, err := Parse([]byte(yaml), "bad.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", yaml, err, want)
		}
	}
	c, err := Parse([]byte("ers:\n  zones:\n    - {zone: bl.example, codes: {127.0.0.2: spam}}\n  recheck_interval: 0\n"), "ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.ERS.Zones[0].TXT || c.ERS.RecheckInterval != 0 || !c.ERS.StartupCheck {
		t.Fatalf("zone defaults / legacy latch: %+v", c.ERS)
	}
}

// Line tells where a key is written, so tools (policy test) can point at a
// rule; keys left at their defaults have no line.
func TestLine(t *testing.T) {
	c, err := Parse([]byte("listen: 127.0.0.1:2600\npolicy:\n  rules:\n    - {name: a, then: deliver}\n\n    - name: b\n      then: discard\n"), "lines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"listen": 1, "policy.rules[0]": 4, "policy.rules[1]": 6, "policy.rules[1].then": 7, "policy.on_infected": 0, "downstream": 0} {
		if got := c.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
	if Default().Line("listen") == 0 {
		t.Error("the embedded default's keys have lines in it")
	}
}
