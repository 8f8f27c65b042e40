package integration

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/integration/harness"
)

// The addresses of deploy/compose.yaml and the ones this test gives the
// same two "containers" (198.18.0.0/15, RFC 2544: they exist only inside
// the test's namespaces).
const (
	composePostfix = "10.225.25.2"
	testPostfix    = "198.18.0.1"
	testFoxproxy   = "198.18.0.2"
	// testStranger is another host on the network, not Postfix.
	testStranger = "198.18.0.3"
)

// containerConfig writes deploy/foxproxy.docker.yaml with only what this
// test must change: Postfix's address (downstream, allowed_clients) and the
// state directory (a temporary one for /var/lib/foxproxy). It fails if the
// image's file no longer says what the test replaces, and checks that every
// other key is the image's own.
func containerConfig(t *testing.T) string {
	t.Helper()
	orig, err := os.ReadFile(filepath.Join("..", "deploy", "foxproxy.docker.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var image, derived map[string]any
	if err := yaml.Unmarshal(orig, &image); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(orig, &derived); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	replace := []struct {
		path      []string
		image, to any
	}{
		{[]string{"downstream"}, composePostfix + ":10026", testPostfix + ":10026"},
		{[]string{"allowed_clients"}, []any{composePostfix + "/32"}, []any{testPostfix + "/32"}},
		{[]string{"quarantine", "dir"}, "/var/lib/foxproxy/quarantine", filepath.Join(state, "quarantine")},
		{[]string{"spool", "dir"}, "/var/lib/foxproxy", state},
	}
	for _, r := range replace {
		m := derived
		for _, k := range r.path[:len(r.path)-1] {
			m = m[k].(map[string]any)
		}
		last := r.path[len(r.path)-1]
		if !reflect.DeepEqual(m[last], r.image) {
			t.Fatalf("deploy/foxproxy.docker.yaml: %s is %#v, the test expects %#v (compose.yaml's topology)", strings.Join(r.path, "."), m[last], r.image)
		}
		m[last] = r.to
	}
	// Everything else is the image's: listen and admin_listen on every
	// interface, the sections' other keys, logging.
	for k, v := range image {
		if k == "downstream" || k == "allowed_clients" {
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			for sk, sv := range sub {
				if (k == "quarantine" || k == "spool") && sk == "dir" {
					continue
				}
				if !reflect.DeepEqual(derived[k].(map[string]any)[sk], sv) {
					t.Fatalf("derived configuration changed %s.%s", k, sk)
				}
			}
			continue
		}
		if !reflect.DeepEqual(derived[k], v) {
			t.Fatalf("derived configuration changed %s", k)
		}
	}
	if len(derived) != len(image) {
		t.Fatalf("derived configuration has %d keys, the image's %d", len(derived), len(image))
	}
	out, err := yaml.Marshal(derived)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "foxproxy.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("derived configuration: %v\n%s", err, out)
	}
	if cfg.Listen != "0.0.0.0:10025" || cfg.AdminListen != "0.0.0.0:10080" {
		t.Fatalf("image listens on %s, admin %s; compose.yaml expects 0.0.0.0:10025 and 0.0.0.0:10080", cfg.Listen, cfg.AdminListen)
	}
	return path
}

// TestContainerTopology runs deploy/compose.yaml's topology without a
// container engine: foxproxy on the image's configuration in a network
// namespace of its own, Postfix in another, a veth pair between them as the
// compose network. Postfix's content_filter reaches foxproxy across the
// link and foxproxy re-injects across it; another host is refused at
// connect; from outside foxproxy's namespace the admin endpoint serves
// health and metrics but no mail data, while `foxproxy status` inside it
// still shows the last messages.
func TestContainerTopology(t *testing.T) {
	pfNS, fxNS := harness.NewNetNS(t), harness.NewNetNS(t)
	pfDev, _ := harness.LinkNetNS(t, pfNS, testPostfix+"/24", fxNS, testFoxproxy+"/24")
	pfNS.AddAddr(t, pfDev, testStranger+"/24")

	// Postfix as deploy/postfix/master.cf sets it up: content_filter to
	// foxproxy's address, a re-injection smtpd on its own address that
	// lets foxproxy relay and send XFORWARD.
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		NetNS:        pfNS,
		FilterAddr:   testFoxproxy + ":10025",
		ReinjectAddr: testPostfix + ":10026",
		ReinjectOptions: []string{
			"mynetworks=" + testFoxproxy + "/32",
			"smtpd_authorized_xforward_hosts=" + testFoxproxy + "/32",
		},
	})
	bin := harness.BuildFoxproxy(t)
	fp := &foxproxy{Process: fxNS.RunProcess(t, bin, "-config", containerConfig(t))}
	fp.WaitLog(t, `"foxproxy started"`, 20*time.Second)
	pfNS.WaitPort(t, testFoxproxy+":10025", 10*time.Second)

	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, NetNS: pfNS, Subject: "across the link"})
	if res.Code != 250 || res.QueueID == "" {
		t.Fatalf("Postfix did not queue the message: %s\n%s", res.Reply, res.Output)
	}
	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 1, 60*time.Second)
	if got := msgs[0].Header().Get("Subject"); got != "across the link" {
		t.Fatalf("delivered Subject %q", got)
	}
	// Both hops crossed the link: Postfix's filter transport to foxproxy's
	// address, foxproxy from its address to the re-injection smtpd.
	pf.WaitLog(t, `postfix/foxproxy/smtp\[\d+\]: `+res.QueueID+`: to=<`+harness.RcptAddr+`>, relay=`+testFoxproxy+`\[`+testFoxproxy+`\]:10025, .*status=sent`, 10*time.Second)
	pf.WaitLog(t, `postfix/reinject/smtpd\[\d+\]: connect from \S+\[`+testFoxproxy+`\]`, 10*time.Second)
	logged := fp.waitMessages(t, 1, 10*time.Second)[0]
	msgID, _ := logged["msg_id"].(string)
	if logged["verdict"] != "deliver" || msgID == "" {
		t.Fatalf("foxproxy's message line: %v", logged)
	}

	// A host on the network that is not Postfix: refused before anything
	// else, RFC 5321 §3.1 (554 instead of the greeting).
	stranger := harness.Send(t, harness.SendOptions{Server: testFoxproxy + ":10025", NetNS: pfNS,
		Args: []string{"--local-interface", testStranger}})
	if stranger.Code != 554 || !strings.Contains(stranger.Output, "<** 554") {
		t.Fatalf("client %s outside allowed_clients: %q\n%s", testStranger, stranger.Reply, stranger.Output)
	}

	// The admin endpoint from Postfix's namespace: the orchestrator's view.
	admin := "http://" + testFoxproxy + ":10080"
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `foxproxy_messages_total{rule="default",verdict="deliver"} 1`,
	} {
		code, body := pfNS.HTTPGet(t, admin+path, "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s from another host: %d, want 200 with %q:\n%s", path, code, want, clip(body, 2000))
		}
	}
	mailData := []string{harness.SenderAddr, msgID, res.QueueID}
	code, body := pfNS.HTTPGet(t, admin+"/status", "application/json")
	if code != 200 || !strings.Contains(body, `"mail_data_withheld": "mail data`) ||
		!strings.Contains(body, "admin_listen 0.0.0.0:10080") || !strings.Contains(body, `"recent": []`) ||
		!strings.Contains(body, `"kind": "downstream"`) {
		t.Errorf("/status from another host: %d\n%s", code, body)
	}
	for _, s := range mailData {
		if strings.Contains(body, s) {
			t.Errorf("/status shows %q to another host:\n%s", s, body)
		}
	}
	if code, page := pfNS.HTTPGet(t, admin+"/status", "text/html"); code != 200 || !strings.Contains(page, "mail_data_withheld") {
		t.Errorf("status page from another host: %d", code)
	}

	// `foxproxy status` from the other namespace: health, no mail data;
	// inside foxproxy's own namespace (docker compose exec): the last
	// messages too.
	outside := runIn(t, pfNS, bin, "status", "-admin", admin)
	if !strings.Contains(outside, "LAST MESSAGES: not shown: mail data") || !strings.Contains(outside, "downstream smtpd") {
		t.Errorf("foxproxy status from another host:\n%s", outside)
	}
	for _, s := range mailData {
		if strings.Contains(outside, s) {
			t.Errorf("foxproxy status from another host shows %q:\n%s", s, outside)
		}
	}
	inside := runIn(t, fxNS, bin, "status", "-admin", "http://127.0.0.1:10080")
	if strings.Contains(inside, "not shown") || !strings.Contains(inside, "LAST MESSAGES") || !strings.Contains(inside, harness.SenderAddr) {
		t.Errorf("foxproxy status inside foxproxy's namespace:\n%s", inside)
	}
	if code, _ := pfNS.HTTPGet(t, admin+"/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof without admin_pprof: %d", code)
	}
}

// runIn runs a foxproxy command inside ns; it must exit 0.
func runIn(t *testing.T, ns *harness.NetNS, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns.Name, err, out)
	}
	return string(out)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
