//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// profile is one scenario profiled under load.
type profile struct {
	name     string
	dir      string
	msgs     int     // messages sent while the CPU profile ran
	rate     float64 // msg/s meanwhile (the profiler's own cost included)
	cpuTop   string  // go tool pprof -top of the CPU profile
	cpuCum   string  // the same by cumulative time (-cum): where time goes by call path
	allocTop string  // of the allocations during the load (alloc_space)
	objTop   string  // the same by objects (alloc_objects)
	err      string
}

// takeProfiles profiles foxproxy through its admin endpoint (admin_pprof)
// in the scenarios that matter most: pass-through (kept sessions and a new
// session per message, whose difference is what a session costs) and
// ERS+WRS at concurrency 20, and clamd, all with 10 KB messages. The
// profiles and "go tool pprof -top" of each are written to
// FOXBENCH_PROFILE.
func takeProfiles(t *testing.T, e *env) []*profile {
	seconds := 10
	if e.opts.quick {
		seconds = 4
	}
	m := e.messages[0]
	var out []*profile
	for _, c := range []struct {
		key string
		pt  pattern
	}{{"pass", patterns[0]}, {"pass", patterns[1]}, {"erswarm", patterns[0]}, {"clamd", patterns[0]}} {
		sc := scenarioByKey(c.key)
		p := &profile{name: sc.name + ", " + c.pt.name + ", " + m.label + ", c=20", dir: filepath.Join(e.opts.profileDir, c.key+"-"+c.pt.key+"-"+m.key+"-c20")}
		out = append(out, p)
		if err := profileOne(t, e, sc, m, c.pt, 20, seconds, p); err != nil {
			p.err = err.Error()
			t.Errorf("profile %s: %v", p.name, err)
		}
	}
	return out
}

func profileOne(t *testing.T, e *env, sc *scenario, m *message, pt pattern, conc, seconds int, p *profile) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	fox := startFoxproxy(t, e, "profile-"+sc.key+"-"+pt.key, sc.config(e)...)
	defer fox.proc.Stop()
	n, warm := calibrate(t, e.sink, fox.addr, m, pt, conc, e.opts, fox.pid())
	if r := warm[len(warm)-1]; !r.valid() {
		return fmt.Errorf("warm-up: %s", r.err)
	}
	allocs0 := filepath.Join(p.dir, "allocs-before.pb.gz")
	if err := fetch(fox.admin+"/debug/pprof/allocs", allocs0); err != nil {
		return err
	}
	cpu := filepath.Join(p.dir, "cpu.pb.gz")
	done := make(chan error, 1)
	go func() { done <- fetch(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", fox.admin, seconds), cpu) }()
	// Load in runs of about a second until the profile is in.
	n = max(n/3, 2*conc)
	start := time.Now()
	var perr error
load:
	for {
		r := source(t, e.sink, fox.addr, m, pt, conc, n, e.opts.runTimeout, fox.pid())
		p.msgs += r.sent
		if !r.valid() {
			return fmt.Errorf("load: %s", r.err)
		}
		select {
		case perr = <-done:
			break load
		default:
		}
	}
	p.rate = float64(p.msgs) / time.Since(start).Seconds()
	if perr != nil {
		return perr
	}
	allocs1 := filepath.Join(p.dir, "allocs-after.pb.gz")
	if err := fetch(fox.admin+"/debug/pprof/allocs", allocs1); err != nil {
		return err
	}
	var err error
	if p.cpuTop, err = pprofTop(p.dir, "cpu.txt", "-top", "-nodecount=30", cpu); err != nil {
		return err
	}
	if p.cpuCum, err = pprofTop(p.dir, "cpu_cum.txt", "-top", "-cum", "-nodecount=60", cpu); err != nil {
		return err
	}
	if p.allocTop, err = pprofTop(p.dir, "alloc_space.txt", "-top", "-nodecount=20", "-sample_index=alloc_space", "-base", allocs0, allocs1); err != nil {
		return err
	}
	if p.objTop, err = pprofTop(p.dir, "alloc_objects.txt", "-top", "-nodecount=20", "-sample_index=alloc_objects", "-base", allocs0, allocs1); err != nil {
		return err
	}
	t.Logf("%s: %d messages at %.0f msg/s while profiling; profiles in %s", p.name, p.msgs, p.rate, p.dir)
	return nil
}

func fetch(url, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop runs "go tool pprof" with args, keeps its output in dir/name
// and returns it without the preamble before the table.
func pprofTop(dir, name string, args ...string) (string, error) {
	out, err := exec.Command("go", append([]string{"tool", "pprof"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
		return "", err
	}
	text := string(out)
	if i := strings.Index(text, "Showing nodes"); i >= 0 {
		text = text[i:]
	}
	return strings.TrimRight(text, "\n"), nil
}
