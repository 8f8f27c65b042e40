package delivery

import (
	"io"
	"strings"
	"testing"
)

func TestRemoveOurFields(t *testing.T) {
	long := strings.Repeat("a", 6000)
	cases := []struct {
		in, want string
		removed  int
	}{
		{"Subject: hi\r\n\r\nX-Foxproxy: body\r\n", "Subject: hi\r\n\r\nX-Foxproxy: body\r\n", 0},
		{"X-Foxproxy: foxproxy/1; verdict=deliver\r\nSubject: hi\r\n\r\nb\r\n", "Subject: hi\r\n\r\nb\r\n", 1},
		{"Subject: hi\r\nx-foxproxy-flag: clean\r\nX-FOXPROXY : v;\r\n\tverdict=deliver\r\nTo: a\r\n\r\nb\r\n", "Subject: hi\r\nTo: a\r\n\r\nb\r\n", 2},
		{"X-Foxproxyish: keep\r\nX-Foxproxy-Released: x\r\n\r\n", "X-Foxproxyish: keep\r\n\r\n", 1},
		{"X-Foxproxy: " + long + "\r\n\tmore\r\nSubject: s\r\n\r\nb\r\n", "Subject: s\r\n\r\nb\r\n", 1},
		{"Subject: " + long + "\r\nX-Foxproxy: f\r\n\r\nb", "Subject: " + long + "\r\n\r\nb", 1},
		{"no header end X-Foxproxy: x", "no header end X-Foxproxy: x", 0},
	}
	for _, c := range cases {
		has := hasOurFields(strings.NewReader(c.in), 1<<20)
		r, n := removeOurFields(strings.NewReader(c.in), 1<<20)
		got, _ := io.ReadAll(r)
		if string(got) != c.want || n != c.removed || has != (c.removed > 0) {
			t.Errorf("in %.50q: got %.50q removed %d (scan %v), want %.50q removed %d", c.in, got, n, has, c.want, c.removed)
		}
	}
}

// What every delivered message pays for the check: one scan of its header
// block (a typical 2 KB one here), against the removal a forged one costs.
func BenchmarkForgedTraceCheck(b *testing.B) {
	head := strings.Repeat("Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mx.example.test (Postfix) with ESMTP id 4ABCDEF\r\n", 16)
	msg := head + "Subject: hello\r\n\r\n" + strings.Repeat("body line\r\n", 500)
	b.Run("clean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if hasOurFields(strings.NewReader(msg), 1<<20) {
				b.Fatal("found")
			}
		}
	})
	forged := "X-Foxproxy: forged\r\n" + msg
	b.Run("forged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := removeOurFields(strings.NewReader(forged), 1<<20)
			io.Copy(io.Discard, r)
		}
	})
}
