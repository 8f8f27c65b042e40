package lists

import (
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/health"
)

// The list files' states in FilesStatus.Report.
const (
	// FilesLoaded: the files in force are the files on disk.
	FilesLoaded health.State = "loaded"
	// FilesRefused: a changed file was refused; the lists read before it
	// stay in force.
	FilesRefused health.State = "refused"
)

// Report is the list files' row on the status page (kind "lists", name
// "files"): files are the configured files, inForce the lists read from
// them (counted per list).
func (st FilesStatus) Report(files Files, inForce *Set) health.Report {
	r := health.Report{Kind: "lists", Name: "files", State: FilesLoaded, OK: true, Since: st.Loaded,
		Counters: map[string]uint64{}}
	var paths []string
	for _, k := range Kinds() {
		r.Counters[k.String()] = uint64(inForce.Len(k))
		if p := files[k]; p != "" {
			paths = append(paths, p)
		}
	}
	r.Target = strings.Join(paths, ",")
	if st.LastError != "" {
		r.State, r.OK, r.LastError = FilesRefused, false, st.LastError
		r.Detail = "a changed file was refused; the lists read " + st.Loaded.UTC().Format(time.RFC3339) + " stay in force"
	}
	return r
}
