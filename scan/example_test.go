package scan_test

import (
	"context"
	"log"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/scan"
)

// The stage built from the configuration of docs/scan.md:
//
//	scan:
//	  mode: smart
//	  smart: {url: "icap://127.0.0.1:1344/avscan"}
//	  conventional: {url: "unix:/run/clamav/clamd.ctl"}
//	  fallback_to_conventional: true
//	  disable_smart_after: 5
//	  recheck_interval: 1m
func ExampleNewStage() {
	opts := scan.Options{Timeout: 30 * time.Second, DialTimeout: 5 * time.Second, MaxConcurrent: 8}
	smart, err := scan.NewScanner("icap://127.0.0.1:1344/avscan", opts)
	if err != nil {
		log.Fatal(err)
	}
	conventional, err := scan.NewScanner("unix:/run/clamav/clamd.ctl", opts)
	if err != nil {
		log.Fatal(err)
	}
	stage, err := scan.NewStage(scan.Config{
		Mode:                   scan.ModeSmart,
		Smart:                  smart,
		Conventional:           conventional,
		FallbackToConventional: true,
		DisableSmartAfter:      5,
		RecheckInterval:        time.Minute,
		MaxSize:                25 << 20,
		Oversize:               scan.OversizePass,
		Logger:                 zap.NewExample(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stage.Close()

	p := pipeline.New(stage /* , ers, wrs, ... */)
	var tx *pipeline.Transaction // built by the proxy for each message
	if tx != nil {
		findings, _ := p.Run(context.Background(), tx)
		log.Println(findings[0].Trace()) // e.g. scan=clean(smart)
	}
	log.Printf("%+v", stage.Health()) // for the status endpoint
}
