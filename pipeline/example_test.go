package pipeline_test

import (
	"context"
	"fmt"
	"log"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/spool"
)

// sizeStage is a stage of this example: it reports messages larger than
// max as listed in its category "large".
type sizeStage struct{ max int64 }

// Name is the stage's name in findings, the trace header and the policy.
func (sizeStage) Name() pipeline.StageName { return "size" }

// Inspect reports a fact about the message, never what to do with it.
func (s sizeStage) Inspect(_ context.Context, tx *pipeline.Transaction) pipeline.Finding {
	if n := tx.Message.Size(); n > s.max {
		return pipeline.Finding{Status: pipeline.Listed, Categories: []string{"large"}, Detail: fmt.Sprintf("%d bytes", n)}
	}
	return pipeline.Finding{Status: pipeline.Clean}
}

// linkStage is another: it counts the message's links, which stages get
// from the transaction (one extraction shared by every stage that asks).
type linkStage struct{ x *links.Extractor }

func (linkStage) Name() pipeline.StageName { return "linkcount" }

func (s linkStage) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	res, err := tx.Links(ctx, s.x)
	if err != nil {
		// The stage's time ran out: it could not look.
		return pipeline.Finding{Status: pipeline.Skipped, Detail: err.Error()}
	}
	return pipeline.Finding{Status: pipeline.Clean, Detail: fmt.Sprintf("%d links", len(res.URLs))}
}

// Each stage reports one finding; Run runs the stages concurrently and
// returns the findings in stage order, each named after its stage.
func Example() {
	x, err := links.New(links.Config{})
	if err != nil {
		log.Fatal(err)
	}
	p := pipeline.New(sizeStage{max: 64}, linkStage{x: x})
	tx := &pipeline.Transaction{
		ID:      "example",
		From:    "a@sender.example",
		Rcpts:   []string{"b@rcpt.example"},
		Message: spool.FromBytes([]byte("Subject: hello\r\n\r\nSee https://www.example.com/a and https://example.org/b.\r\n")),
	}
	findings, err := p.Run(context.Background(), tx)
	if err != nil {
		log.Fatal(err) // a stage panicked: the proxy answers 4xx
	}
	for _, f := range findings {
		fmt.Println(f.Trace(), "-", f.Detail)
	}
	// Output:
	// size=listed(large) - 76 bytes
	// linkcount=clean - 2 links
}
