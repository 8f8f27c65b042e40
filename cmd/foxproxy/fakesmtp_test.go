package main

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// fakeDownstream is a scripted re-injection smtpd: it records every command
// line as sent (so tests see XFORWARD and the MAIL parameters exactly) and
// can refuse recipients or break off after the final dot.
type fakeDownstream struct {
	addr string

	mu           sync.Mutex
	cmds         []string
	messages     []string // content of each accepted message, dot-unstuffed
	rcptReply    map[string]string
	dataReply    string
	dropAfterDot bool
}

func startFakeDownstream(t *testing.T) *fakeDownstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDownstream{addr: ln.Addr().String(), rcptReply: map[string]string{},
		dataReply: "250 2.0.0 Ok: queued as 4DS12345"}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.serve(c)
			}()
		}
	}()
	return d
}

func (d *fakeDownstream) set(fn func(d *fakeDownstream)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(d)
}

func (d *fakeDownstream) commands() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.cmds...)
}

func (d *fakeDownstream) delivered() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.messages...)
}

func (d *fakeDownstream) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { c.Write([]byte(s + "\r\n")) }
	say("220 ds.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		d.mu.Lock()
		d.cmds = append(d.cmds, line)
		d.mu.Unlock()
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			say("250-ds.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n" +
				"250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
		case "XFORWARD", "RSET", "NOOP":
			say("250 2.0.0 Ok")
		case "MAIL":
			say("250 2.1.0 Ok")
		case "RCPT":
			rcpt := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(line, " ", 3)[1], "TO:<"), ">")
			d.mu.Lock()
			rep := d.rcptReply[rcpt]
			d.mu.Unlock()
			if rep == "" {
				rep = "250 2.1.5 Ok"
			}
			say(rep)
		case "DATA":
			say("354 End data with <CR><LF>.<CR><LF>")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(strings.TrimPrefix(l, "."))
			}
			d.mu.Lock()
			drop, rep := d.dropAfterDot, d.dataReply
			if !drop && strings.HasPrefix(rep, "250") {
				d.messages = append(d.messages, msg.String())
			}
			d.mu.Unlock()
			if drop {
				return
			}
			say(rep)
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}
