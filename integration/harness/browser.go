package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumArgs are what a headless Chromium needs on these machines: no
// sandbox as root, and no background connections to Google's services
// (this network refuses them, many at a time).
func chromiumArgs(t testing.TB, budget time.Duration) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + tempDir(t, "chromium"),
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()),
	}
}

// BrowserDOM loads url in headless Chromium (Debian's chromium package),
// lets the page's scripts run for budget of virtual time, and returns the
// DOM as the page then shows it: what a person would see, scripts included.
func BrowserDOM(t testing.TB, url string, budget time.Duration) string {
	t.Helper()
	bin := requireBin(t, "chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(chromiumArgs(t, budget), "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("harness: chromium --dump-dom %s: %v", url, err)
	}
	return string(out)
}

// BrowserScreenshot saves a PNG of url as headless Chromium renders it and
// returns the file's path.
func BrowserScreenshot(t testing.TB, url string, budget time.Duration) string {
	t.Helper()
	bin := requireBin(t, "chromium")
	path := filepath.Join(tempDir(t, "screenshot"), "page.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(chromiumArgs(t, budget), "--window-size=1280,900", "--screenshot="+path, url)
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("harness: chromium --screenshot %s: %v\n%s", url, err, out)
	}
	return path
}

// Chromium starts headless Chromium (Debian's chromium package) driven over
// the DevTools protocol (chromedp), for tests that log in, click and read
// what the page did. It trusts any certificate (the tests' own, made on
// the fly) and stops with the test: the browser it started, by its
// process, and nothing else.
func Chromium(t testing.TB) context.Context {
	t.Helper()
	bin := requireBin(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(tempDir(t, "chromium")), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return ctx
}
