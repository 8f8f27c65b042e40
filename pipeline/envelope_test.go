package pipeline

import (
	"context"
	"errors"
	"testing"
)

// envStage is a stage that can also look at the envelope alone.
type envStage struct {
	name  string
	panic bool
}

func (s envStage) Name() StageName { return StageName(s.name) }
func (s envStage) Inspect(context.Context, *Transaction) Finding {
	return Finding{Status: Infected, Detail: "Inspect called"}
}
func (s envStage) InspectEnvelope(_ context.Context, tx *Transaction) Finding {
	if s.panic {
		panic("boom")
	}
	return Finding{Status: Listed, Categories: []string{tx.From}}
}

type contentStage struct{}

func (contentStage) Name() StageName { return "scan" }
func (contentStage) Inspect(context.Context, *Transaction) Finding {
	return Finding{Status: Clean}
}

// RunEnvelope runs only the stages that can look at the envelope, through
// InspectEnvelope, in stage order; a panic is an error naming the stage.
func TestRunEnvelope(t *testing.T) {
	p := New(envStage{name: "lists"}, contentStage{}, envStage{name: "ers"})
	fs, err := p.RunEnvelope(context.Background(), &Transaction{From: "a@b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].Stage != "lists" || fs[1].Stage != "ers" || !fs[1].Has("a@b.example") {
		t.Fatalf("findings %+v", fs)
	}
	if fs, err := New(contentStage{}).RunEnvelope(context.Background(), &Transaction{}); err != nil || len(fs) != 0 {
		t.Fatalf("no envelope stage: %+v, %v", fs, err)
	}
	_, err = New(envStage{name: "ers", panic: true}).RunEnvelope(context.Background(), &Transaction{})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Stage != "ers" {
		t.Fatalf("panic: %v", err)
	}
}
