package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/quarantine"
)

const testMessage = "Received: from x\r\nSubject: hello \x1b[31mred\r\nFrom: <a@example.test>\r\n\r\nthe body line\r\n.a line with a dot\r\n"

// quarantineSetup writes a configuration whose quarantine.dir is a fresh
// directory and whose downstream is downstream, and stores entries in it.
func quarantineSetup(t *testing.T, downstream string, entries ...quarantine.Entry) (cfgPath string, store *quarantine.DirStore, ids []string) {
	t.Helper()
	dir := t.TempDir()
	qdir := filepath.Join(dir, "q")
	store, err := quarantine.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		id, err := store.Put(context.Background(), e, strings.NewReader(testMessage))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if downstream == "" {
		downstream = "127.0.0.1:1"
	}
	cfgPath = filepath.Join(dir, "foxproxy.yaml")
	cfg := "downstream: " + downstream + "\nhostname: fp.test\nquarantine: {dir: " + qdir + ", retention: 30d}\n" +
		"timeouts: {downstream_connect: 2s, downstream_command: 2s, downstream_data: 2s}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, store, ids
}

var (
	virusEntry = quarantine.Entry{From: "sender@example.test", Rcpts: []string{"rcpt@example.test"}, Size: int64(len(testMessage)),
		Rule: "virus", Client: "192.0.2.7", QueueID: "4UPSTREAM1",
		Findings:    []quarantine.Finding{{Stage: "ers", Status: "clean"}, {Stage: "scan", Status: "infected", Detail: "Eicar-Test-Signature", Backend: "smart"}},
		MailOptions: map[string]string{"BODY": "8BITMIME", "RET": "HDRS", "ENVID": "env+1=x", "SMTPUTF8": ""},
		Xforward: map[string]string{"NAME": "client.example.test", "ADDR": "192.0.2.7", "PORT": "4711", "PROTO": "ESMTP",
			"HELO": "helo.example.test", "IDENT": "4UPSTREAM1", "SOURCE": "REMOTE"}}
	nullSenderEntry = quarantine.Entry{From: "", Rcpts: []string{"a@example.test", "b@example.test"}, Size: 10, Rule: "rule-2",
		Findings: []quarantine.Finding{{Stage: "ers", Status: "listed", Categories: []string{"spam"}}}}
)

type cliResult struct {
	code        int
	out, errOut string
}

func runCLI(args ...string) cliResult {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return cliResult{code, out.String(), errOut.String()}
}

// Every quarantine command: arguments in, exit code and output out.
func TestQuarantineCommands(t *testing.T) {
	cfg, _, ids := quarantineSetup(t, "", virusEntry, nullSenderEntry)
	missingDir := filepath.Join(t.TempDir(), "nodir.yaml")
	os.WriteFile(missingDir, []byte("quarantine: {dir: /nonexistent/foxproxy-q}\n"), 0o644)
	cases := []struct {
		name        string
		args        []string
		code        int
		out, errOut []string // substrings
		notOut      []string
	}{
		{"no subcommand", []string{"quarantine"}, 2, nil, []string{"usage: foxproxy quarantine"}, nil},
		{"unknown subcommand", []string{"quarantine", "frob"}, 2, nil, []string{`unknown command "frob"`}, nil},
		{"list", []string{"quarantine", "list", "-config", cfg}, 0,
			[]string{"ID", "TIME (UTC)", ids[0], ids[1], "<sender@example.test>", "<>", "virus", "scan=infected(Eicar-Test-Signature)",
				"ers=listed(spam)", "2 entries in "}, nil, []string{"ers=clean"}},
		{"list flags after", []string{"quarantine", "list", "--json", "-config", cfg}, 0, []string{`"id": "` + ids[0], `"rule": "rule-2"`}, nil, nil},
		{"list with an argument", []string{"quarantine", "list", "x", "-config", cfg}, 2, nil, []string{`unexpected argument "x"`}, nil},
		{"list of a missing dir", []string{"quarantine", "list", "-config", missingDir}, 1, nil, []string{"/nonexistent/foxproxy-q", "no such file"}, nil},
		{"show header", []string{"quarantine", "show", ids[0], "-config", cfg}, 0,
			[]string{"ID:        " + ids[0], "From:      <sender@example.test>", "To:        <rcpt@example.test>",
				"Client:    192.0.2.7 (name client.example.test, helo helo.example.test)", "Queue ID:  4UPSTREAM1 (upstream)",
				"Rule:      virus", "Finding:   scan=infected(Eicar-Test-Signature)", "MAIL:      BODY=8BITMIME ENVID=env+1=x RET=HDRS SMTPUTF8",
				`Subject: hello \x1b[31mred`, "[body not shown"}, nil, []string{"the body line", "\x1b"}},
		{"show body", []string{"quarantine", "show", "--body", ids[0], "-config", cfg}, 0, []string{"Subject: hello", "the body line", ".a line with a dot"}, nil, []string{"\x1b"}},
		{"show raw", []string{"quarantine", "show", ids[0], "--raw", "-config", cfg}, 0, []string{testMessage}, nil, []string{"ID:"}},
		{"show json", []string{"quarantine", "show", "--json", ids[1], "-config", cfg}, 0, []string{`"rcpts": [`, `"b@example.test"`}, nil, nil},
		{"show body and raw", []string{"quarantine", "show", "--body", "--raw", ids[0], "-config", cfg}, 2, nil, []string{"exclude each other"}, nil},
		{"show without ID", []string{"quarantine", "show", "-config", cfg}, 2, nil, []string{"give the ID"}, nil},
		{"show unknown ID", []string{"quarantine", "show", "20260101T000000-00000000", "-config", cfg}, 1, nil, []string{"20260101T000000-00000000: no such entry"}, nil},
		{"show a path", []string{"quarantine", "show", "../../etc/passwd", "-config", cfg}, 1, nil, []string{"no such entry"}, nil},
		{"delete unknown", []string{"quarantine", "delete", "nope", "-config", cfg}, 1, nil, []string{"nope: no such entry"}, nil},
		{"release without ID", []string{"quarantine", "release", "-config", cfg}, 2, nil, []string{"give the ID"}, nil},
		{"purge bad age", []string{"quarantine", "purge", "--older-than", "soon", "-config", cfg}, 2, nil, []string{"invalid duration"}, nil},
		{"purge nothing old", []string{"quarantine", "purge", "-config", cfg}, 0, []string{"purged 0 entries older than 30d"}, nil, nil},
		{"bad flag", []string{"quarantine", "list", "--jsn", "-config", cfg}, 2, nil, []string{"flag provided but not defined: -jsn"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.out, r.errOut)
			}
			for _, s := range tc.out {
				if !strings.Contains(r.out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.out)
				}
			}
			for _, s := range tc.notOut {
				if strings.Contains(r.out, s) {
					t.Errorf("stdout has %q:\n%s", s, r.out)
				}
			}
			for _, s := range tc.errOut {
				if !strings.Contains(r.errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.errOut)
				}
			}
		})
	}
	r := runCLI("quarantine", "list", "--json", "-config", cfg)
	var got []quarantine.Entry
	if err := json.Unmarshal([]byte(r.out), &got); err != nil || len(got) != 2 || got[0].ID != ids[0] {
		t.Fatalf("list --json: %v, %+v", err, got)
	}
}

func TestQuarantineDeleteAndPurge(t *testing.T) {
	old := virusEntry
	old.Time = time.Now().Add(-40 * 24 * time.Hour)
	young := nullSenderEntry
	young.Time = time.Now().Add(-2 * time.Hour)
	cfg, store, ids := quarantineSetup(t, "", old, young, virusEntry)

	if r := runCLI("quarantine", "delete", ids[2], "-config", cfg); r.code != 0 || !strings.Contains(r.out, ids[2]+": deleted") {
		t.Fatalf("delete: %+v", r)
	}
	if r := runCLI("quarantine", "delete", ids[2], "-config", cfg); r.code != 1 || !strings.Contains(r.errOut, "no such entry") {
		t.Fatalf("delete again: %+v", r)
	}
	if r := runCLI("quarantine", "purge", "-config", cfg); r.code != 0 || !strings.Contains(r.out, "purged 1 entry older than 30d") {
		t.Fatalf("purge by retention: %+v", r)
	}
	if r := runCLI("quarantine", "purge", "--older-than", "1h", "-config", cfg); r.code != 0 || !strings.Contains(r.out, "purged 1 entry older than 1h0m0s") {
		t.Fatalf("purge --older-than: %+v", r)
	}
	if l, _ := store.List(context.Background()); len(l) != 0 {
		t.Fatalf("left: %+v", l)
	}
	if _, err := os.Stat(filepath.Join(store.Dir(), ids[0]+".eml")); !os.IsNotExist(err) {
		t.Fatal("purged entry's message left behind")
	}
}

// A release sends the original envelope (MAIL parameters, XFORWARD) with
// a header that records the release, and deletes the entry only after the
// downstream's 250; a second release finds nothing.
func TestQuarantineRelease(t *testing.T) {
	ds := startFakeDownstream(t)
	cfg, store, ids := quarantineSetup(t, ds.addr, virusEntry)
	id := ids[0]

	r := runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 0 || !strings.Contains(r.out, id+": released to <rcpt@example.test>: 250 2.0.0 Ok: queued as 4DS12345") {
		t.Fatalf("release: %+v", r)
	}
	cmds := strings.Join(ds.commands(), "\n")
	for _, want := range []string{
		"XFORWARD NAME=client.example.test ADDR=192.0.2.7 PORT=4711",
		"XFORWARD PROTO=ESMTP HELO=helo.example.test IDENT=4UPSTREAM1 SOURCE=REMOTE",
		"MAIL FROM:<sender@example.test> BODY=8BITMIME SIZE=",
		" SMTPUTF8 RET=HDRS ENVID=env+2B1+3Dx",
		"RCPT TO:<rcpt@example.test>",
	} {
		if !strings.Contains(cmds, want) {
			t.Errorf("downstream did not see %q in:\n%s", want, cmds)
		}
	}
	msgs := ds.delivered()
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered", len(msgs))
	}
	head, rest, _ := strings.Cut(msgs[0], "\r\nReceived: from x\r\n")
	if !strings.HasPrefix(head, "X-Foxproxy-Released: foxproxy/") || !strings.Contains(head, "id="+id) ||
		!strings.Contains(head, "rule=virus") || !strings.Contains(head, "scan=infected(Eicar-Test-Signature)") ||
		!strings.Contains(head, "host=fp.test") || !strings.Contains(head, "by=") {
		t.Fatalf("release header %q", head)
	}
	if "Received: from x\r\n"+rest != testMessage {
		t.Fatalf("content changed:\n%q", rest)
	}
	// SIZE announces the message as sent: the stored one plus the header.
	if size := fmt.Sprintf(" SIZE=%d ", len(msgs[0])); !strings.Contains(cmds, size) {
		t.Errorf("MAIL lacks%q:\n%s", size, cmds)
	}
	if _, err := store.Get(context.Background(), id); err == nil {
		t.Fatal("entry still there after the downstream's 250")
	}
	if files, _ := os.ReadDir(store.Dir()); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
	r = runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.errOut, id+": no such entry") {
		t.Fatalf("second release: %+v", r)
	}
	if len(ds.delivered()) != 1 {
		t.Fatal("delivered twice")
	}
}

// Some recipients refused: the others get the message, and the entry
// stays for the refused ones only, so releasing again cannot deliver twice.
func TestQuarantineReleasePartialRefusal(t *testing.T) {
	ds := startFakeDownstream(t)
	cfg, store, ids := quarantineSetup(t, ds.addr, nullSenderEntry)
	id := ids[0]
	ds.set(func(d *fakeDownstream) { d.rcptReply["b@example.test"] = "450 4.2.1 <b@example.test>: Mailbox busy" })

	r := runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.out, "released to <a@example.test>: 250") ||
		!strings.Contains(r.errOut, "refused <b@example.test>: 450 4.2.1 <b@example.test>: Mailbox busy") ||
		!strings.Contains(r.errOut, "kept for that recipient only") {
		t.Fatalf("partial release: %+v", r)
	}
	e, err := store.Get(context.Background(), id)
	if err != nil || !slices.Equal(e.Rcpts, []string{"b@example.test"}) || len(e.Released) != 1 ||
		!slices.Equal(e.Released[0].Rcpts, []string{"a@example.test"}) || e.Released[0].QueuedAs != "4DS12345" {
		t.Fatalf("entry after a partial release: %+v, %v", e, err)
	}
	if r := runCLI("quarantine", "show", id, "-config", cfg); !strings.Contains(r.out, "Released:") || !strings.Contains(r.out, "to <a@example.test> (queued as 4DS12345)") {
		t.Fatalf("show after a partial release: %s", r.out)
	}

	ds.set(func(d *fakeDownstream) { delete(d.rcptReply, "b@example.test") })
	r = runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 0 || !strings.Contains(r.out, "released to <b@example.test>") {
		t.Fatalf("second release: %+v", r)
	}
	var rcpts []string
	for _, c := range ds.commands() {
		if strings.HasPrefix(c, "RCPT") {
			rcpts = append(rcpts, c)
		}
	}
	want := []string{"RCPT TO:<a@example.test>", "RCPT TO:<b@example.test>", "RCPT TO:<b@example.test>"}
	if !slices.Equal(rcpts, want) || len(ds.delivered()) != 2 {
		t.Fatalf("RCPTs %q, %d deliveries; want %q, 2", rcpts, len(ds.delivered()), want)
	}
}

// Refusals and failures that deliver nothing keep the entry as it was.
func TestQuarantineReleaseRefusedKeepsEntry(t *testing.T) {
	ds := startFakeDownstream(t)
	cfg, store, ids := quarantineSetup(t, ds.addr, virusEntry)
	id := ids[0]

	ds.set(func(d *fakeDownstream) {
		d.rcptReply["rcpt@example.test"] = "550 5.1.1 <rcpt@example.test>: User unknown"
	})
	r := runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.errOut, "not released: downstream refused every recipient: <rcpt@example.test>: 550 5.1.1") ||
		!strings.Contains(r.errOut, "the entry is kept") {
		t.Fatalf("all refused: %+v", r)
	}
	ds.set(func(d *fakeDownstream) {
		delete(d.rcptReply, "rcpt@example.test")
		d.dataReply = "554 5.7.1 Error: content refused"
	})
	r = runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.errOut, "downstream refused DATA: 554 5.7.1 Error: content refused") {
		t.Fatalf("DATA refused: %+v", r)
	}
	e, err := store.Get(context.Background(), id)
	if err != nil || !slices.Equal(e.Rcpts, virusEntry.Rcpts) {
		t.Fatalf("entry changed: %+v, %v", e, err)
	}
	if _, claimed := store.Claimed(context.Background(), id); claimed {
		t.Fatal("a refused release left its claim")
	}

	cfgDown := filepath.Join(t.TempDir(), "down.yaml")
	os.WriteFile(cfgDown, []byte("downstream: 127.0.0.1:1\nquarantine: {dir: "+store.Dir()+"}\n"), 0o644)
	r = runCLI("quarantine", "release", id, "-config", cfgDown)
	if r.code != 1 || !strings.Contains(r.errOut, "connect to downstream 127.0.0.1:1") {
		t.Fatalf("unreachable downstream: %+v", r)
	}
	if _, err := store.Get(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if len(ds.delivered()) != 0 {
		t.Fatal("delivered")
	}
}

// The connection breaks after the final dot: the downstream may have the
// message. The entry is kept and marked, a plain release is refused with
// advice, and --force sends it.
func TestQuarantineReleaseUncertain(t *testing.T) {
	ds := startFakeDownstream(t)
	cfg, store, ids := quarantineSetup(t, ds.addr, virusEntry)
	id := ids[0]
	ds.set(func(d *fakeDownstream) { d.dropAfterDot = true })

	r := runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.errOut, "may have been queued") || !strings.Contains(r.errOut, "orig_queue_id=4UPSTREAM1") {
		t.Fatalf("uncertain release: %+v", r)
	}
	ds.set(func(d *fakeDownstream) { d.dropAfterDot = false })
	r = runCLI("quarantine", "release", id, "-config", cfg)
	if r.code != 1 || !strings.Contains(r.errOut, "did not learn whether the downstream took the message") ||
		!strings.Contains(r.errOut, "foxproxy quarantine release --force "+id) {
		t.Fatalf("release after an uncertain one: %+v", r)
	}
	if len(ds.delivered()) != 0 {
		t.Fatal("released again without --force")
	}
	if r := runCLI("quarantine", "show", id, "-config", cfg); !strings.Contains(r.out, "Claim:") {
		t.Fatalf("show does not mention the claim:\n%s", r.out)
	}
	r = runCLI("quarantine", "release", "--force", id, "-config", cfg)
	if r.code != 0 || len(ds.delivered()) != 1 {
		t.Fatalf("forced release: %+v", r)
	}
	if files, _ := os.ReadDir(store.Dir()); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// A claim of a running release is never taken over, not even with --force.
func TestQuarantineReleaseWhileAnotherRuns(t *testing.T) {
	ds := startFakeDownstream(t)
	cfg, store, ids := quarantineSetup(t, ds.addr, virusEntry)
	claim, err := store.Claim(context.Background(), ids[0], false) // this test process: running
	if err != nil {
		t.Fatal(err)
	}
	defer claim.Drop()
	for _, args := range [][]string{{"release", ids[0]}, {"release", "--force", ids[0]}} {
		r := runCLI(append(append([]string{"quarantine"}, args...), "-config", cfg)...)
		if r.code != 1 || !strings.Contains(r.errOut, "is being released by process") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	if len(ds.commands()) != 0 {
		t.Fatal("contacted the downstream")
	}
}

// The running daemon enforces quarantine.retention by itself.
func TestPurgeEveryEnforcesRetention(t *testing.T) {
	store, err := quarantine.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := store.Put(context.Background(), quarantine.Entry{Time: time.Now().Add(-48 * time.Hour)}, strings.NewReader("old"))
	young, _ := store.Put(context.Background(), quarantine.Entry{}, strings.NewReader("young"))
	stop := purgeEvery(store, 24*time.Hour, time.Hour, zap.NewNop())
	defer stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := store.Get(context.Background(), old); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry past retention not purged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := store.Get(context.Background(), young); err != nil {
		t.Fatalf("young entry purged: %v", err)
	}
}
