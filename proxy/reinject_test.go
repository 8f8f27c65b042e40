package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/policy"
)

// A quarantined message keeps each recipient's DSN parameters, and a
// release repeats them: the sender's NOTIFY=SUCCESS still brings a
// notification when the message is finally delivered.
func TestQuarantineKeepsRcptDSNForRelease(t *testing.T) {
	ds := startDownstream(t)
	q := &memQuarantine{}
	p := startProxy(t, ds.addr, withPolicy(fixedPolicy{Action: policy.Quarantine, Rule: "q"}),
		func(rt *Runtime) { rt.Quarantine = q })
	r := dialRaw(t, p.addr)
	r.greet()
	r.send("MAIL FROM:<a@example.test> RET=HDRS\r\n")
	r.expect("250 ")
	r.send("RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Borig@example.test\r\n")
	r.expect("250 ")
	r.send("RCPT TO:<c@example.test>\r\n")
	r.expect("250 ")
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	r.expect("250 2.0.0 Ok: quarantined as Q1")
	if len(q.items) != 1 {
		t.Fatalf("%d items quarantined", len(q.items))
	}
	it := q.items[0]
	if got := it.RcptParams["b@example.test"]; got["NOTIFY"] != "SUCCESS,FAILURE" || got["ORCPT"] != "RFC822;b+orig@example.test" {
		t.Fatalf("recorded RCPT parameters %v", it.RcptParams)
	}
	if _, ok := it.RcptParams["c@example.test"]; ok {
		t.Fatalf("parameters recorded for a recipient that had none: %v", it.RcptParams)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := delivery.Reinject(ctx, delivery.ReinjectOptions{Addr: ds.addr, Hostname: "foxproxy.test"},
		delivery.Envelope{From: "a@example.test", Rcpts: it.Tx.Rcpts, MailParams: it.MailParams, RcptParams: it.RcptParams},
		strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := ds.messages()
	ro := msgs[len(msgs)-1].rcptOpts
	if len(ro) != 2 || len(ro[0].Notify) != 2 || ro[0].Notify[0] != smtp.DSNNotifySuccess ||
		ro[0].OriginalRecipientType != smtp.DSNAddressTypeRFC822 || ro[0].OriginalRecipient != "b+orig@example.test" ||
		len(ro[1].Notify) != 0 || ro[1].OriginalRecipient != "" {
		t.Fatalf("re-injected RCPT parameters %+v", ro)
	}
}
