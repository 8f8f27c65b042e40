//go:build bench

package bench

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/emersion/go-smtp"
)

// latencyClient sends messages one at a time with go-smtp's client and
// times each: MAIL to the reply after the final dot on one kept session
// (as smtp-source -d sends), or a whole session per message (connect,
// greeting, EHLO, MAIL, RCPT, DATA, QUIT), as Postfix's smtp client does
// when no connection is cached, which is the usual case at low load.
type latencyClient struct {
	addr string
	c    *smtp.Client // the kept session
}

func (l *latencyClient) close() {
	if l.c != nil {
		l.c.Quit()
		l.c.Close()
		l.c = nil
	}
}

func transaction(c *smtp.Client, wire []byte) error {
	if err := c.Mail(sender, nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt(recipient, nil); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(wire); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	return nil
}

func dial(addr string) (*smtp.Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = time.Minute
	if err := c.Hello(heloName); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// kept times one transaction on the kept session (dialled on first use and
// again after an error).
func (l *latencyClient) kept(wire []byte) (time.Duration, error) {
	if l.c == nil {
		c, err := dial(l.addr)
		if err != nil {
			return 0, err
		}
		l.c = c
	}
	start := time.Now()
	err := transaction(l.c, wire)
	d := time.Since(start)
	if err != nil {
		l.c.Close()
		l.c = nil
	}
	return d, err
}

// session times a whole session that delivers one message.
func (l *latencyClient) session(wire []byte) (time.Duration, error) {
	start := time.Now()
	c, err := dial(l.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := transaction(c, wire); err != nil {
		return 0, err
	}
	if err := c.Quit(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// samples are per-message times of one endpoint.
type samples struct {
	d      []time.Duration
	errors int
	first  string // the first error
}

func (s *samples) add(d time.Duration, err error) {
	if err != nil {
		s.errors++
		if s.first == "" {
			s.first = err.Error()
		}
		return
	}
	s.d = append(s.d, d)
}

// percentile is the nearest-rank percentile p (0 < p <= 100).
func (s *samples) percentile(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	d := slices.Clone(s.d)
	slices.Sort(d)
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// measureLatency sends rounds messages to every endpoint in turn (one
// message to each per round, so that a slow moment of a noisy machine
// hits all of them alike), after warm rounds that are not recorded, and
// returns per endpoint the samples on a kept session and with a session
// per message (sessionRounds of those).
func measureLatency(addrs []string, wire []byte, warm, rounds, sessionRounds int) (kept, perSession []*samples) {
	clients := make([]*latencyClient, len(addrs))
	kept = make([]*samples, len(addrs))
	perSession = make([]*samples, len(addrs))
	for i, a := range addrs {
		clients[i] = &latencyClient{addr: a}
		kept[i], perSession[i] = &samples{}, &samples{}
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for r := range warm + rounds {
		for i, c := range clients {
			d, err := c.kept(wire)
			if r >= warm {
				kept[i].add(d, err)
			}
		}
	}
	for range sessionRounds {
		for i, c := range clients {
			perSession[i].add(c.session(wire))
		}
	}
	return kept, perSession
}
