package config

import (
	"strings"
	"testing"
)

// The configuration refuses rules that could never work, with their line.
func TestRuleValidation(t *testing.T) {
	cases := map[string]string{
		"policy:\n  rules:\n    - {then: explode}\n":                                          "policy.yaml:3: policy.rules[0].then: \"explode\" is not one of",
		"policy:\n  rules:\n    - {if: {scan: dirty}, then: reject}\n":                        `policy.rules[0].if.scan[0]: "dirty" is not one of`,
		"policy:\n  rules:\n    - {if: {ers: spam}, then: reject}\n":                          "ERS has no zones configured",
		"policy:\n  rules:\n    - {if: {header: [{name: s, matches: '('}]}, then: discard}\n": "policy.rules[0].if.header[0].matches",
		"policy:\n  rules:\n    - {then: reject, reply: {code: 451}}\n":                       "451 does not fit reject",
		"quarantine: {dir: ''}\npolicy:\n  rules:\n    - {then: quarantine}\n":                "quarantine needs quarantine.dir",
		"quarantine: {dir: ''}\nscan: {conventional: {url: 'unix:/x'}}\n":                     "policy.on_infected: quarantine needs quarantine.dir",
		"policy:\n  rules:\n    - {then: deliver, subject_prefix: x}\n":                       "need the action tag",
		"policy:\n  on_scan_unavailable: maybe\n":                                             "policy.on_scan_unavailable",
	}
	for yaml, want := range cases {
		_, err := Parse([]byte(yaml), "policy.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", yaml, err, want)
		}
	}
}

func TestEncryptRuleValidation(t *testing.T) {
	for yaml, want := range map[string]string{
		"policy:\n  rules:\n    - {then: reject, rewrite_links: true}\n":                                          "rewrite_links",
		"policy:\n  rules:\n    - {if: {rcpt_domain: [a@b.example]}, then: deliver}\n":                            "rcpt_domain",
		"policy:\n  rules:\n    - {if: {list: [friends]}, then: deliver}\n":                                       "approved_clients",
		"policy:\n  rules:\n    - {then: encrypt}\n":                                                              "encrypt needs a key source",
		"encryption: {openpgp: {wkd: true}}\nquarantine: {dir: \"\"}\npolicy:\n  rules:\n    - {then: encrypt}\n": "needs quarantine.dir",
	} {
		if _, err := Parse([]byte(yaml), "policy.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", yaml, err, want)
		}
	}
}
