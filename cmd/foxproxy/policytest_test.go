package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyConfig is a configuration with ERS (pointing at a port where no
// DNS server answers: --no-stages must not ask it) and rules over every
// kind of finding. Line numbers matter: the tests check them.
const policyConfig = `dns: {servers: [127.0.0.1:1], timeout: 200ms}
ers:
  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam}}]
policy:
  rules:
    - {name: partners, if: {client: [192.0.2.0/24]}, then: deliver}
    - {name: ers-block, if: {ers: [spam]}, then: reject}
    - name: phish
      if: {wrs: [phish]}
      then: quarantine
    - {if: {header: [{name: Subject, matches: "(?i)lottery"}]}, then: tag, subject_prefix: "[SPAM]"}
  on_infected: reject
quarantine: {dir: QDIR}
wrs: {zones: [{zone: uribl.example.test}], budget: 200ms}
`

func writePolicyTest(t *testing.T, cfgText string) (cfg, msg, lfMsg, qdir string) {
	t.Helper()
	dir := t.TempDir()
	qdir = filepath.Join(dir, "quarantine")
	cfg = filepath.Join(dir, "foxproxy.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(cfgText, "QDIR", qdir)), 0o644)
	msg = filepath.Join(dir, "msg.eml")
	os.WriteFile(msg, []byte("From: <a@example.test>\r\nSubject: hello\r\n\r\nbody\r\n"), 0o644)
	lfMsg = filepath.Join(dir, "lottery.eml")
	os.WriteFile(lfMsg, []byte("From: <a@example.test>\nSubject: You won the LOTTERY\n\nbody\n"), 0o644)
	return cfg, msg, lfMsg, qdir
}

func TestPolicyTest(t *testing.T) {
	cfg, msg, lfMsg, qdir := writePolicyTest(t, policyConfig)
	base := []string{"policy", "test", "-config", cfg, "--no-stages", "--from", "a@example.test", "--to", "c@example.test"}
	cases := []struct {
		name        string
		args        []string
		code        int
		out, errOut []string
	}{
		{"nothing found", []string{"--client", "198.51.100.7", msg}, 0,
			[]string{"envelope  client 198.51.100.7, helo \"\", from <a@example.test>, to <c@example.test>",
				"stage     ers: not run (--no-stages)", "(none)", "verdict   deliver, no rule matched (the default)"}, nil},
		{"ers listed", []string{"--client", "198.51.100.7", "--finding", "ers=listed:spam", msg}, 0,
			[]string{"ers=listed(spam)", "injected", `verdict   reject, rule "ers-block", policy.rules[1] (` + cfg + `:7)`,
				"reply     550 5.7.1 Service unavailable; client host [198.51.100.7] blocked using a block list"}, nil},
		{"first match wins", []string{"--client", "192.0.2.9", "--finding", "ers=listed:spam", msg}, 0,
			[]string{`verdict   deliver, rule "partners", policy.rules[0] (` + cfg + `:6)`}, nil},
		{"wrs injected", []string{"--finding", "wrs=listed:phish,malware", msg}, 0,
			[]string{"wrs=listed(malware,phish)", `verdict   quarantine, rule "phish", policy.rules[2] (` + cfg + `:8)`,
				"store     in quarantine.dir " + qdir + " (not in this dry run)"}, nil},
		{"skipped wrs never matches a category", []string{"--finding", "wrs=skipped:timeout", msg}, 0,
			[]string{"wrs=skipped", "timeout", "verdict   deliver, no rule matched"}, nil},
		{"infected goes to on_infected", []string{"--finding", "scan=infected:Eicar-Test-Signature", msg}, 0,
			[]string{"scan=infected(Eicar-Test-Signature)", "verdict   reject, by policy.on_infected (" + cfg + ":12)",
				"reply     550 5.7.1 Error: message refused: malware found (Eicar-Test-Signature)"}, nil},
		{"unscanned goes to on_scan_unavailable", []string{"--finding", "scan=unavailable", msg}, 0,
			[]string{"verdict   tempfail, by policy.on_scan_unavailable (its default)", "reply     451 4.7.1"}, nil},
		{"header rule on a file with LF line ends", []string{lfMsg}, 0,
			[]string{`verdict   tag, rule "rule-4", policy.rules[3] (` + cfg + `:11)`, `subject   prefixed with "[SPAM]"`,
				"header    X-Foxproxy-Flag: rule-4"}, nil},
		{"no recipient", []string{"policy", "test", "-config", cfg, msg}, 2, nil, []string{"at least one --to"}},
		{"no message", []string{}, 2, nil, []string{"give one message file"}},
		{"bad client", []string{"--client", "mx.example", msg}, 2, nil, []string{`--client "mx.example" is not an IP address`}},
		{"bad finding stage", []string{"--finding", "dkim=fail", msg}, 2, nil, []string{"STAGE one of ers, wrs, scan"}},
		{"bad finding status", []string{"--finding", "scan=listed", msg}, 2, nil, []string{`scan status "listed" is not one of`}},
		{"finding twice", []string{"--finding", "ers=clean", "--finding", "ers=listed", msg}, 2, nil, []string{"ers given twice"}},
		{"missing message", []string{filepath.Join(t.TempDir(), "nope.eml")}, 1, nil, []string{"no such file"}},
		{"no subcommand", []string{"policy"}, 2, nil, []string{"usage: foxproxy policy test"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			if len(tc.args) > 0 && tc.args[0] == "policy" {
				args = tc.args
			}
			r := runCLI(args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.out, r.errOut)
			}
			for _, s := range tc.out {
				if !strings.Contains(r.out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.out)
				}
			}
			for _, s := range tc.errOut {
				if !strings.Contains(r.errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
				}
			}
		})
	}
	if _, err := os.Stat(qdir); !os.IsNotExist(err) {
		t.Fatal("a dry run created quarantine.dir")
	}
}

// A rule can test the local lists, so --finding takes the lists stage too,
// with the lists' names as its categories.
func TestPolicyTestListsFinding(t *testing.T) {
	cfg, msg, _, _ := writePolicyTest(t, `policy:
  rules:
    - {name: blocked, if: {list: [blocked_clients]}, then: reject}
`)
	base := []string{"policy", "test", "-config", cfg, "--no-stages", "--to", "c@example.test"}
	cases := []struct {
		name        string
		args        []string
		code        int
		out, errOut []string
	}{
		{"listed client", []string{"--finding", "lists=listed:blocked_clients", msg}, 0,
			[]string{"lists=listed(blocked_clients)", "injected", `verdict   reject, rule "blocked", policy.rules[0] (` + cfg + `:3)`,
				"reply     550 5.7.1 Error: message refused by policy"}, nil},
		{"another list", []string{"--finding", "lists=listed:approved_clients", msg}, 0,
			[]string{"lists=listed(approved_clients)", "verdict   deliver, no rule matched (the default)"}, nil},
		{"clean", []string{"--finding", "lists=clean", msg}, 0,
			[]string{"lists=clean", "verdict   deliver, no rule matched (the default)"}, nil},
		{"every testable stage offered", []string{"--finding", "dkim=fail", msg}, 2, nil,
			[]string{"STAGE one of ers, wrs, scan, lists"}},
		{"unknown list", []string{"--finding", "lists=listed:blocked_client", msg}, 2, nil,
			[]string{`lists category "blocked_client" is not one of approved_clients, blocked_clients, approved_senders, blocked_senders, blocked_urls`}},
		{"listed without a list", []string{"--finding", "lists=listed", msg}, 2, nil,
			[]string{"lists=listed needs :WHAT"}},
		{"status the stage never reports", []string{"--finding", "lists=infected", msg}, 2, nil,
			[]string{`lists status "infected" is not one of clean, listed`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(append(append([]string{}, base...), tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.out, r.errOut)
			}
			for _, s := range tc.out {
				if !strings.Contains(r.out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.out)
				}
			}
			for _, s := range tc.errOut {
				if !strings.Contains(r.errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
				}
			}
		})
	}
}

// Without --no-stages the configured stages run for real, built by wire():
// a scanner that cannot be reached makes the finding unavailable.
func TestPolicyTestRunsStages(t *testing.T) {
	cfg, msg, _, _ := writePolicyTest(t, `scan:
  conventional: {url: "tcp://127.0.0.1:1"}
  fallback_to_conventional: false
  timeout: 1s
  dial_timeout: 1s
timeouts: {stages: 5s}
`)
	r := runCLI("policy", "test", "-config", cfg, "--client", "192.0.2.1", "--to", "c@example.test", msg)
	for _, want := range []string{"stage     scan: real scan by conventional tcp://127.0.0.1:1 (mode conventional)",
		"scan=unavailable", "verdict   tempfail, by policy.on_scan_unavailable (its default)"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("stdout lacks %q:\n%s\nstderr: %s", want, r.out, r.errOut)
		}
	}
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	// An injected finding replaces the stage: it is not run.
	r = runCLI("policy", "test", "-config", cfg, "--to", "c@example.test", "--finding", "scan=clean", msg)
	if !strings.Contains(r.out, "scan: not run, finding given with --finding") || !strings.Contains(r.out, "verdict   deliver") {
		t.Fatalf("injected scan:\n%s", r.out)
	}
}

// check-config names what the configuration will do.
func TestCheckConfigSummary(t *testing.T) {
	cfg, _, _, qdir := writePolicyTest(t, policyConfig+`scan:
  smart: {url: "icap://127.0.0.1:1344/avscan"}
  conventional: {url: "tcp://127.0.0.1:3310"}
`)
	r := runCLI("check-config", "-config", cfg)
	for _, want := range []string{cfg + ": configuration OK",
		"smtp:       listen 127.0.0.1:10025, downstream 127.0.0.1:10026",
		"ers:        1 zone (bl.example.test) via 127.0.0.1:1",
		"scan:       smart icap://127.0.0.1:1344/avscan, conventional tcp://127.0.0.1:3310 (fallback) (mode smart)",
		"policy:     4 rules, then deliver; on_infected: reject; on_scan_unavailable: tempfail",
		"quarantine: " + qdir + ", kept 30d"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("check-config lacks %q:\n%s", want, r.out)
		}
	}
	r = runCLI("check-config")
	if !strings.Contains(r.out, "ers:        off") || !strings.Contains(r.out, "quarantine: not used") {
		t.Errorf("default summary:\n%s", r.out)
	}
	for _, absent := range []string{"click:", "encryption:", "hold:"} {
		if strings.Contains(r.out, absent) {
			t.Errorf("default summary mentions %q, which is not configured:\n%s", absent, r.out)
		}
	}

	// The late services: click, encryption, hold.
	dir := t.TempDir()
	secret := filepath.Join(dir, "k2.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, _, qdir = writePolicyTest(t, policyConfig+`scan:
  conventional: {url: "tcp://127.0.0.1:3310"}
  hold_after: 30m
  rescan_rate: 0.5
click:
  listen: 127.0.0.1:10081
  base_url: https://click.example.test
  keys: [{id: k2, secret_file: `+secret+`}, {id: k1, secret_file: `+secret+`}]
  on_unavailable: block
encryption:
  openpgp: {keyring_dir: `+dir+`, wkd: true, timeout: 3s}
  on_key_service_unavailable: tempfail
`)
	r = runCLI("check-config", "-config", cfg)
	for _, want := range []string{cfg + ": configuration OK",
		"click:      listen 127.0.0.1:10081, base_url https://click.example.test, signing key k2 (1 more key verify), on_unavailable: block",
		"hold:       after 30m0s without a scanner, in " + qdir + "/held; rescan 0.5/s, up to 100 every 30s",
		"encryption: openpgp keyring " + dir + ", wkd (timeout 3s); on_key_service_unavailable: tempfail; on_key_absent: quarantine (after_queue default)"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("check-config lacks %q:\n%s%s", want, r.out, r.errOut)
		}
	}
}
