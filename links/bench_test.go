package links

import (
	"bytes"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// newsletter builds a ~100 KB HTML newsletter as marketing mail looks:
// table layout, inline CSS, images, tracking links with long query strings
// (40 distinct URLs, each used several times), text, quoted-printable.
func newsletter(size int, encoding string) []byte {
	var h strings.Builder
	h.WriteString(`<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><title>Weekly deals</title>
<style type="text/css">body{margin:0;padding:0;font-family:Helvetica,Arial,sans-serif}.btn{background:#e4002b;color:#fff;padding:12px 24px}
@media only screen and (max-width:600px){.col{width:100%!important}}</style></head><body style="margin:0;padding:0;background:#f4f4f4">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"><tr><td align="center">`)
	for i := 0; h.Len() < size; i++ {
		id := i % 40
		fmt.Fprintf(&h, `<table class="col" width="600" cellpadding="0" cellspacing="0" border="0" style="background:#ffffff;border-collapse:collapse">
<tr><td style="padding:20px 30px;font-size:16px;line-height:24px;color:#333333">
<a href="https://click.mailer.example.com/ls/click?upn=aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1z-%d&amp;utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign=weekly">
<img src="https://images.cdn.example.net/campaign/2024/03/product-%d.jpg" width="540" height="300" alt="Product %d" style="display:block;border:0;width:100%%;height:auto"></a>
<h2 style="margin:16px 0 8px;font-size:22px">Deal number %d of the week</h2>
<p style="margin:0 0 12px">Our best price on item %d, this week only. Free shipping on orders over 50 EUR; returns within 30 days. See the terms at www.shop.example.com/terms for details &amp; conditions.</p>
<p style="margin:0"><a class="btn" href="https://click.mailer.example.com/ls/click?upn=aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1z-%d&amp;utm_content=button" style="background:#e4002b;color:#ffffff;text-decoration:none;padding:12px 24px;border-radius:4px">Shop now &rsaquo;</a></p>
</td></tr></table>
`, id, id, i, i, i, id)
	}
	h.WriteString(`<p style="font-size:12px;color:#999999">You receive this mail because you subscribed. <a href="https://lists.example.com/unsubscribe?u=0123456789abcdef">Unsubscribe</a> &middot; <a href="https://www.shop.example.com/privacy">Privacy</a></p>
<img src="https://click.mailer.example.com/open/pixel.gif?u=0123456789abcdef" width="1" height="1" alt=""></td></tr></table></body></html>
`)
	var body bytes.Buffer
	switch encoding {
	case "quoted-printable":
		w := quotedprintable.NewWriter(&body)
		w.Write([]byte(h.String()))
		w.Close()
	default:
		body.WriteString(h.String())
	}
	msg := "From: Shop <news@shop.example.com>\r\nTo: user@customer.example\r\nSubject: Weekly deals\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: " + encoding + "\r\n\r\n" +
		strings.ReplaceAll(strings.ReplaceAll(body.String(), "\r\n", "\n"), "\n", "\r\n")
	return []byte(msg)
}

func TestNewsletter(t *testing.T) {
	msg := newsletter(100<<10, "quoted-printable")
	res := mustNew(t, Config{}).Extract(bytes.NewReader(msg))
	if res.Truncated {
		t.Error("truncated")
	}
	// 80 click links and 40 images, 10 kept per host; terms, unsubscribe,
	// privacy; every host is kept.
	diffList(t, "notes", res.Notes, []string{"101 more links skipped on hosts that already have 10 URLs"})
	diffList(t, "keys", keyStrings(res.Keys()), []string{
		"domain:example.com", "domain:example.net",
		"host:click.mailer.example.com", "host:images.cdn.example.net", "host:lists.example.com", "host:www.shop.example.com",
	})
	t.Logf("%d bytes, %d URLs, %d decoded bytes", len(msg), len(res.URLs), res.Bytes)
}

// BenchmarkExtractHTML100K: extraction from a 100 KB quoted-printable HTML
// newsletter, the common case.
func BenchmarkExtractHTML100K(b *testing.B) {
	benchExtract(b, newsletter(100<<10, "quoted-printable"))
}

// BenchmarkExtractHTML100K8bit: the same without transfer encoding.
func BenchmarkExtractHTML100K8bit(b *testing.B) {
	benchExtract(b, newsletter(100<<10, "8bit"))
}

func benchExtract(b *testing.B, msg []byte) {
	x, err := New(Config{Redirectors: DefaultRedirectors()})
	if err != nil {
		b.Fatal(err)
	}
	x.Extract(bytes.NewReader(msg)) // compile the regexp outside the loop
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		x.Extract(bytes.NewReader(msg))
	}
}

func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Normalize("https://Click.Mailer.Example.com/ls/click?upn=aB3dE5fG7hI9jK1lM3nO5pQ7rS9&utm_source=newsletter#x")
	}
}
