package scan

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

func TestParseClamdVersion(t *testing.T) {
	cases := []struct {
		in     string
		engine string
		daily  int
		date   time.Time
		bad    bool
	}{
		{"ClamAV 1.0.7/27480/Wed Nov 25 09:00:00 2026\n", "ClamAV 1.0.7", 27480, time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), false},
		{"ClamAV 1.4.3/27000/Tue Nov  3 08:00:00 2026", "ClamAV 1.4.3", 27000, time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC), false},
		{"ClamAV 1.4.3", "ClamAV 1.4.3", 0, time.Time{}, false},
		{"ClamAV 1.4.3/x/Tue Nov 3 08:00:00 2026", "", 0, time.Time{}, true},
		{"ClamAV 1.4.3/27000/yesterday", "", 0, time.Time{}, true},
		{"ClamAV 1.4.3/27000", "", 0, time.Time{}, true},
		{"UNKNOWN COMMAND", "", 0, time.Time{}, true},
	}
	for _, c := range cases {
		v, err := ParseClamdVersion(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil || v.Engine != c.engine || v.Daily != c.daily || !v.Date.Equal(c.date) {
			t.Errorf("%q = %+v, %v", c.in, v, err)
		}
	}
}

// fakeVersionClamd answers every connection's zVERSION with reply.
func fakeVersionClamd(t *testing.T, reply string) string {
	t.Helper()
	return testutil.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if string(buf[:n]) == "zVERSION\x00" {
			io.WriteString(c, reply+"\x00")
		}
	})
}

func TestDBMonitorWarnsWhenOld(t *testing.T) {
	built := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	addr := fakeVersionClamd(t, "ClamAV 1.0.7/27480/"+built.Format(time.ANSIC))
	for _, c := range []struct {
		maxAge time.Duration
		old    bool
	}{{24 * time.Hour, true}, {7 * 24 * time.Hour, false}, {0, false}} {
		m := NewDBMonitor(map[string]string{"conventional": "tcp://" + addr, "smart": "icap://127.0.0.1:1/x"}, c.maxAge, Options{})
		if m.Len() != 1 {
			t.Fatalf("monitoring %d scanners, want the clamd only", m.Len())
		}
		m.Probe(context.Background())
		st := m.States()
		if len(st) != 1 || st[0].Err != "" || st[0].Version.Daily != 27480 || !st[0].Version.Date.Equal(built) || st[0].Old != c.old {
			t.Errorf("max age %v: %+v", c.maxAge, st)
		}
		m.Close()
	}
}
