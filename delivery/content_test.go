package delivery

import (
	"io"
	"strings"
	"testing"
)

func TestRemoveSubjectTag(t *testing.T) {
	cases := map[string]string{
		"Subject: [secure] contract\r\n\r\nbody [secure]\r\n":         "Subject: contract\r\n\r\nbody [secure]\r\n",
		"From: a\r\nsubject: Contract [SECURE]\r\n\r\nb\r\n":          "From: a\r\nsubject: Contract\r\n\r\nb\r\n",
		"Subject: Re: [Secure] x\r\n\tfolded\r\n\r\nb\r\n":            "Subject: Re: x\r\n\tfolded\r\n\r\nb\r\n",
		"Subject: nothing here\r\nX-Tag: [secure]\r\n\r\nb\r\n":       "Subject: nothing here\r\nX-Tag: [secure]\r\n\r\nb\r\n",
		"Subject: [secure]\r\n\r\nb\r\n":                              "Subject:\r\n\r\nb\r\n",
		"X-Other: 1\r\n\r\nSubject: [secure] body line\r\n":           "X-Other: 1\r\n\r\nSubject: [secure] body line\r\n",
		"Subject: two [secure] tags [secure]\r\n\r\nb\r\n":            "Subject: two tags [secure]\r\n\r\nb\r\n",
		"Subject: " + strings.Repeat("x", 5000) + " [secure]\r\n\r\n": "Subject: " + strings.Repeat("x", 5000) + " [secure]\r\n\r\n",
	}
	for in, want := range cases {
		got, err := io.ReadAll(removeSubjectTag(strings.NewReader(in), "[secure]", 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("in %.60q:\n got %.80q\nwant %.80q", in, got, want)
		}
	}
}
