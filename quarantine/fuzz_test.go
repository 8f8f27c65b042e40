package quarantine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzEntryJSON puts arbitrary bytes where an entry's metadata lives, next
// to a good entry. Reading must never panic, a file that does not parse is
// an error for that entry alone (list shows the good one), and what parses
// survives being written back.
func FuzzEntryJSON(f *testing.F) {
	good := Entry{ID: "20261127T140312-f0785e98", Time: time.Date(2026, 11, 27, 14, 3, 12, 0, time.UTC),
		From: "sender@example.test", Rcpts: []string{"rcpt@example.test"}, Client: "192.0.2.1", QueueID: "4ABCDEF",
		Xforward: map[string]string{"ADDR": "192.0.2.1", "NAME": "client.example"}, Size: 907, Rule: "virus",
		Findings:    []Finding{{Stage: "scan", Status: "infected", Detail: "Eicar-Test-Signature", Backend: "smart"}},
		MailOptions: map[string]string{"BODY": "8BITMIME", "SMTPUTF8": ""},
		Released:    []Release{{Time: time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC), Rcpts: []string{"a@example.test"}, QueuedAs: "4XYZ"}}}
	b, _ := json.MarshalIndent(good, "", "  ")
	for _, s := range []string{string(b), "{}", "null", `{"id": "../../etc/passwd", "rcpts": "x"}`, `{"time": "yesterday"}`, `[`, "\xff"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	s := &DirStore{dir: dir, now: time.Now}
	if err := os.WriteFile(filepath.Join(dir, good.ID+".json"), b, 0o600); err != nil {
		f.Fatal(err)
	}
	const id = "20261127T140313-00000000"
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, id+".json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := s.Get(context.Background(), id)
		list, lerr := s.List(context.Background())
		if lerr != nil {
			t.Fatalf("one entry's metadata %q made List fail: %v", data, lerr)
		}
		found := false
		for _, l := range list {
			found = found || l.ID == good.ID && l.Rule == good.Rule
		}
		if !found {
			t.Fatalf("the good entry is not listed next to %q", data)
		}
		if err != nil {
			if !strings.Contains(err.Error(), id) {
				t.Fatalf("error does not name the entry: %v", err)
			}
			return
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("an entry read cannot be written: %v", err)
		}
		var e2 Entry
		if err := json.Unmarshal(again, &e2); err != nil {
			t.Fatalf("an entry written cannot be read: %v", err)
		}
	})
}
