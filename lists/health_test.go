package lists

import (
	"strings"
	"testing"
	"time"
)

// TestFilesStatusReport: the list files' row counts the entries in force
// per list, names the files in list order, and turns "refused" (not
// healthy) when a changed file was refused, saying which lists stay.
func TestFilesStatusReport(t *testing.T) {
	b := NewBuilder()
	b.AddBytes(BlockedClients, "clients", []byte("192.0.2.1\n"))
	set, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	files := Files{BlockedURLs: "/etc/foxproxy/urls", BlockedClients: "/etc/foxproxy/clients"}
	loaded := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	r := FilesStatus{Loaded: loaded}.Report(files, set)
	if r.Kind != "lists" || r.Name != "files" || r.State != FilesLoaded || !r.OK || !r.Since.Equal(loaded) ||
		r.Counters[BlockedClients.String()] != 1 || r.Counters[BlockedURLs.String()] != 0 {
		t.Errorf("loaded: %+v", r)
	}
	if want := "/etc/foxproxy/clients,/etc/foxproxy/urls"; r.Target != want {
		t.Errorf("target %q", r.Target)
	}

	r = FilesStatus{Loaded: loaded, LastError: "clients line 3: bad address"}.Report(files, set)
	if r.State != FilesRefused || r.OK || r.LastError != "clients line 3: bad address" ||
		!strings.Contains(r.Detail, "2026-01-02T03:04:05Z stay in force") {
		t.Errorf("refused: %+v", r)
	}
}
