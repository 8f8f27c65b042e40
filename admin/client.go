package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Fetch gets /status from a running foxproxy's admin endpoint.
func Fetch(ctx context.Context, base string) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/status", nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: HTTP %s", req.URL, resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st)
	return st, err
}

// Ready asks /readyz; nil means ready.
func Ready(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", strings.TrimSpace(string(body)))
	}
	return nil
}

// Print writes the status for a terminal: a headline, one line per
// dependency with problems first, and the last few verdicts.
func Print(w io.Writer, st Status) {
	bad := 0
	for _, d := range st.Dependencies {
		if !d.OK {
			bad++
		}
	}
	verdict := "OK"
	if bad > 0 {
		verdict = fmt.Sprintf("PROBLEM: %d of %d dependencies not up", bad, len(st.Dependencies))
	}
	fmt.Fprintf(w, "foxproxy %s on %s, up %s, %d sessions, %.1f messages/min: %s\n",
		st.Version, orDash(st.Listen), since(st.Started, st.Now), st.Sessions, st.MessagesPerMinute, verdict)
	if st.ScanMode != "" {
		fmt.Fprintf(w, "scan mode: %s (%s)\n", st.ScanMode, st.ScanModeReason)
	}
	if st.Held != nil {
		fmt.Fprintf(w, "held for rescan: %d", st.Held.Count)
		if st.Held.Count > 0 {
			fmt.Fprintf(w, ", oldest %s", since(st.Held.Oldest, st.Now))
		}
		fmt.Fprintln(w)
	}
	deps := append([]Dependency(nil), st.Dependencies...)
	sort.SliceStable(deps, func(i, j int) bool { return !deps[i].OK && deps[j].OK })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDEPENDENCY\tSTATE\tSINCE\tTARGET\tLAST ERROR / DETAIL")
	for _, d := range deps {
		mark := "  "
		if !d.OK {
			mark = "! "
		}
		// A row in trouble shows why; a healthy one what it has (the list
		// bundle in force, the ClamAV database version).
		note := d.LastError
		if note == "" {
			note = d.Detail
		}
		fmt.Fprintf(tw, "%s%s %s\t%s\t%s\t%s\t%s\n", mark, d.Kind, d.Name, d.State, since(d.Since, st.Now), orDash(d.Target), clip(note, 60))
	}
	tw.Flush()
	if st.MailDataWithheld != "" {
		fmt.Fprintf(w, "\nLAST MESSAGES: not shown: %s\n", st.MailDataWithheld)
	}
	if len(st.Recent) > 0 {
		fmt.Fprintln(w, "\nLAST MESSAGES")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for i, v := range st.Recent {
			if i == 10 {
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Time.Local().Format("15:04:05"), v.Client, orDash(v.From), v.Verdict, v.Rule)
		}
		tw.Flush()
	}
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
