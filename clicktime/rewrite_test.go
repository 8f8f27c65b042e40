package clicktime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// b64 encodes s in lines of n characters, CRLF after each, as mail
// clients write base64 bodies.
func b64(s string, n int) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > n {
		b.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const hdr = "Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n" +
	"\tby mail.example.org (Postfix) with ESMTPS id 4XyZ1\r\n" +
	"From: \"Shop\" <news@shop.example>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: =?UTF-8?B?44GK55+l44KJ44Gb?=\r\n" +
	"Message-ID: <20261127.1@shop.example>\r\n" +
	"MIME-Version: 1.0\r\n"

var htmlDoc = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>News</title>
<link rel="stylesheet" href="https://cdn.shop.example/s.css">
<style>a{color:red} /* https://not.a.link.example/ */</style>
<script>var u = "<a href='https://in.script.example/'>";</script>
</head><body>
<!-- <a href="https://in.comment.example/">old</a> -->
<p>Hello <b>Alice</b>, see <a href="https://www.shop.example/offer?id=1&amp;utm=mail">our offer</a>.</p>
<p><A HREF='http://Example.COM/Path#frag' class=x>two</A> and <a class="y" href=https://unquoted.example/x>three</a></p>
<map><area shape="rect" coords="0,0,1,1" href="https://area.example/m"></map>
<p><a href="mailto:help@shop.example">mail us</a> <a href="/relative">rel</a> <a name="top">anchor</a></p>
<img src="https://img.shop.example/p.png" alt="https://alt.example/">
<p>Text URL https://visible.example/ stays (only hrefs in HTML).</p>
</body></html>
`

var htmlTargets = []string{"https://www.shop.example/offer?id=1&utm=mail", "http://Example.COM/Path#frag",
	"https://unquoted.example/x", "https://area.example/m"}

const plainDoc = `Hello Alice,

our offer: https://www.shop.example/offer?id=1&utm=mail.
(details at http://example.com/info) and <https://angle.example/a?b=c>
Write to mailto:help@shop.example or visit xhttp://not.a.link/ or ftp://files.example/.
Wikipedia: https://en.wikipedia.org/wiki/Fox_(disambiguation)
`

var plainTargets = []string{"https://www.shop.example/offer?id=1&utm=mail", "http://example.com/info",
	"https://angle.example/a?b=c", "https://en.wikipedia.org/wiki/Fox_(disambiguation)"}

type rewriteCase struct {
	name   string
	cfg    func(*RewriterConfig)
	pieces []piece
	want   []string // targets in order
	res    Result
}

func rewriteCases() []rewriteCase {
	qpHTML := crlf(`<html><body><p>Sch=C3=B6n, <a href=3D"https://www.shop.example/very/long/pa=
th/to/the/offer?id=3D1&amp;x=3D2">click</a> or <a href=3D"https://b.example/"=
>b</a></p>
<p>=E6=97=A5=E6=9C=AC=E8=AA=9E <a href=3D"http://c.example/?q=3D%E6">c</a></p>
</body></html>
`)
	qpPlain := crlf(`Sch=C3=B6n: https://www.shop.example/very/long/path/to/the/offer?id=3D1&x=
=3D2 and more text
`)
	sjis := "\x83\x68ttp://evil.example/ \x82\xb1http://example.jp/\x82\xb1\r\n"
	iso2022 := "\x1b$B>\\:Y\x1b(B http://example.jp/a \x1b$B>\\:Y\x1b(B\r\n"
	signedInner := "Content-Type: text/plain\r\n\r\nhttps://signed.example/\r\n"
	return []rewriteCase{
		{
			name: "plain 7bit",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"),
				body("7bit", false, crlf(plainDoc)),
			},
			want: plainTargets, res: Result{Rewritten: 4},
		},
		{
			name: "no MIME header at all",
			pieces: []piece{
				lit("From: a@example.net\r\nSubject: hi\r\n\r\n"),
				body("", false, "see http://a.example/x\r\n"),
			},
			want: []string{"http://a.example/x"}, res: Result{Rewritten: 1},
		},
		{
			name: "QP HTML with soft breaks and =3D",
			pieces: []piece{
				lit(hdr + "Content-Type: text/html; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
				body("quoted-printable", true, qpHTML),
			},
			want: []string{"https://www.shop.example/very/long/path/to/the/offer?id=1&x=2", "https://b.example/", "http://c.example/?q=%E6"},
			res:  Result{Rewritten: 3},
		},
		{
			name: "QP plain with a URL across a soft break",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n"),
				body("quoted-printable", false, qpPlain),
			},
			want: []string{"https://www.shop.example/very/long/path/to/the/offer?id=1&x=2"}, res: Result{Rewritten: 1},
		},
		{
			name: "base64 HTML",
			pieces: []piece{
				lit(hdr + "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
				body("base64", true, b64(htmlDoc, 76)),
			},
			want: htmlTargets, res: Result{Rewritten: 4},
		},
		{
			name: "multipart/alternative with attachments, preamble and epilogue",
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/mixed;\r\n\tboundary=\"outer==_1\"\r\n\r\n" +
					"This is a multi-part message in MIME format. https://preamble.example/\r\n" +
					"--outer==_1\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
					"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
				body("quoted-printable", false, qpPlain),
				lit("\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
				body("base64", true, b64(htmlDoc, 72)),
				lit("\r\n--inner--\r\n" +
					"\r\n--outer==_1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: inline\r\n\r\n" +
					b64("\x89PNG\r\n\x1a\nhttps://in.image.example/", 76) +
					"\r\n--outer==_1\r\nContent-Type: text/plain; name=\"links.txt\"\r\nContent-Disposition: attachment; filename=\"links.txt\"\r\n\r\n" +
					"https://in.attachment.example/\r\n" +
					"--outer==_1--   \r\n" +
					"epilogue https://epilogue.example/\r\n"),
			},
			want: append([]string{"https://www.shop.example/very/long/path/to/the/offer?id=1&x=2"}, htmlTargets...),
			res:  Result{Rewritten: 5},
		},
		{
			name: "nested message/rfc822",
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"),
				body("", false, "Forwarding this: http://outer.example/\r\n"),
				lit("\r\n--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" +
					"From: x@y.example\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
					"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"),
				body("8bit", false, "Gr\xfc\xdfe: https://inner.example/p?q=1\r\n"),
				lit("\r\n--b2\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
				body("quoted-printable", true, "<a href=3D\"https://inner.example/h\">x</a>=\r\n"),
				lit("\r\n--b2--\r\n\r\n--b1--\r\n"),
			},
			want: []string{"http://outer.example/", "https://inner.example/p?q=1", "https://inner.example/h"},
			res:  Result{Rewritten: 3},
		},
		{
			name: "excluded domain",
			cfg:  func(c *RewriterConfig) { c.ExcludeDomains = []string{"partner.example", "Intranet.Example."} },
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain\r\n\r\n"),
				body("", false, "https://partner.example/ https://www.partner.example/x http://INTRANET.example./ https://notpartner.example/\r\n"),
			},
			want: []string{"https://notpartner.example/"}, res: Result{Rewritten: 1},
		},
		{
			name: "excluded only: nothing changes",
			cfg:  func(c *RewriterConfig) { c.ExcludeDomains = []string{"partner.example"} },
			pieces: []piece{
				lit(hdr + "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
				body("base64", true, b64(`<a href="https://a.partner.example/">x</a>`, 76)),
			},
		},
		{
			name: "already rewritten",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain\r\n\r\n"),
				body("", false, testBase+"/c/AQJrMQA https://CLICK.example.org/c/xyz and http://new.example/\r\n"),
			},
			want: []string{"http://new.example/"}, res: Result{Rewritten: 1},
		},
		{
			name: "cap",
			cfg:  func(c *RewriterConfig) { c.MaxLinks = 2 },
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain\r\n\r\n"),
				body("", false, "http://1.example/ http://2.example/ http://3.example/ http://4.example/\r\n"),
			},
			want: []string{"http://1.example/", "http://2.example/"}, res: Result{Rewritten: 2, Capped: true},
		},
		{
			name: "Shift_JIS: trailing bytes are not letters",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain; charset=Shift_JIS\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"),
				body("8bit", false, sjis),
			},
			want: []string{"http://example.jp/"}, res: Result{Rewritten: 1},
		},
		{
			name: "ISO-2022-JP: ASCII runs only",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"),
				body("7bit", false, iso2022),
			},
			want: []string{"http://example.jp/a"}, res: Result{Rewritten: 1},
		},
		{
			name: "UTF-8 Japanese text around a URL",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"),
				body("8bit", false, "詳細はhttp://example.jp/infoをご覧ください。 http://example.com/caf\xc3\xa9\r\n"),
			},
			want: []string{"http://example.jp/info"}, res: Result{Rewritten: 1, Unchanged: 1},
		},
		{
			name: "multipart/signed untouched",
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\r\n\r\n" +
					"--s\r\n" + signedInner + "--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n"),
			},
			res: Result{Skipped: "signed"},
		},
		{
			name: "signed deep inside untouched",
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhttp://a.example/\r\n" +
					"--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\nContent-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n" +
					"--s\r\n" + signedInner + "--s--\r\n--m--\r\n"),
			},
			res: Result{Skipped: "signed"},
		},
		{
			name: "S/MIME encrypted untouched",
			pieces: []piece{
				lit(hdr + "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n"),
			},
			res: Result{Skipped: "encrypted"},
		},
		{
			name: "PGP/MIME encrypted untouched",
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=e\r\n\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--e--\r\n"),
			},
			res: Result{Skipped: "encrypted"},
		},
		{
			name: "inline PGP signed untouched",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhttp://a.example/\r\n-----BEGIN PGP SIGNATURE-----\r\nx\r\n-----END PGP SIGNATURE-----\r\n"),
			},
			res: Result{Skipped: "signed"},
		},
		{
			name: "signed, rewrite_signed on",
			cfg:  func(c *RewriterConfig) { c.RewriteSigned = true },
			pieces: []piece{
				lit(hdr + "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n"),
				body("", false, "https://signed.example/\r\n"),
				lit("\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n"),
			},
			want: []string{"https://signed.example/"}, res: Result{Rewritten: 1},
		},
		{
			name: "7bit line that a token would push past 998",
			pieces: []piece{
				lit(hdr + "Content-Type: text/plain\r\n\r\n"),
				body("", false, strings.Repeat("x", 900)+" http://long.example/\r\nshort http://short.example/\r\n"),
			},
			want: []string{"http://short.example/"}, res: Result{Rewritten: 1, Unchanged: 1},
		},
		{
			name: "LF line ends",
			pieces: []piece{
				lit("Subject: lf\nContent-Type: multipart/alternative; boundary=z\n\n--z\nContent-Type: text/plain\n\n"),
				body("", false, "http://lf.example/\n"),
				lit("\n--z--\n"),
			},
			want: []string{"http://lf.example/"}, res: Result{Rewritten: 1},
		},
	}
}

func TestRewrite(t *testing.T) {
	for _, tc := range rewriteCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := testSigner(t, "k2", "k1")
			cfg := RewriterConfig{BaseURL: testBase + "/", Signer: s}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r, err := NewRewriter(cfg)
			if err != nil {
				t.Fatal(err)
			}
			in := join(tc.pieces)
			var out bytes.Buffer
			res, err := r.Rewrite("msg-42", bytes.NewReader(in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if res != tc.res {
				t.Errorf("result %+v, want %+v", res, tc.res)
			}
			got := checkRewritten(t, s, "msg-42", tc.pieces, out.Bytes())
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets\n got %q\nwant %q", got, tc.want)
			}
			if res.Rewritten == 0 && !bytes.Equal(in, out.Bytes()) {
				t.Errorf("nothing rewritten, but the message changed")
			}
			// A mail client reads the same structure, the same types and
			// the same text outside the links.
			pin, err := parseAll(bytes.NewReader(in), 0)
			if err != nil {
				t.Fatalf("go-message cannot read the input: %v", err)
			}
			pout, err := parseAll(bytes.NewReader(out.Bytes()), 0)
			if err != nil {
				t.Fatalf("go-message cannot read the output: %v", err)
			}
			if len(pin) != len(pout) {
				t.Fatalf("%d parts in, %d out", len(pin), len(pout))
			}
			for i := range pin {
				tin, _, _ := strings.Cut(pin[i], "\n")
				tout, _, _ := strings.Cut(pout[i], "\n")
				if tin != tout {
					t.Errorf("part %d: type %q became %q", i, tin, tout)
				}
				if !tokenRE.MatchString(pout[i]) && pin[i] != pout[i] {
					t.Errorf("part %d without click links changed", i)
				}
			}
		})
	}
}

func TestRewriteMalformed(t *testing.T) {
	r, err := NewRewriter(RewriterConfig{BaseURL: testBase, Signer: testSigner(t, "k1")})
	if err != nil {
		t.Fatal(err)
	}
	msg := "Subject: deep\r\n"
	for i := range 30 {
		msg += fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	msg += "Content-Type: text/plain\r\n\r\nhttp://a.example/\r\n"
	many := "Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		strings.Repeat("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n", 1200) + "--b--\r\n"
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"multipart without boundary", "Content-Type: multipart/mixed\r\n\r\nhttp://a.example/\r\n", ErrMalformedMessage},
		{"boundary never used", "Content-Type: multipart/mixed; boundary=zz\r\n\r\nhttp://a.example/\r\n", ErrMalformedMessage},
		{"bad content type", "Content-Type: /\r\n\r\nhttp://a.example/\r\n", ErrMalformedMessage},
		{"too deep", msg, ErrTooComplex},
		{"too many parts", many, ErrTooComplex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := r.Rewrite("m", strings.NewReader(tc.msg), &out)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("wrote %d bytes despite the error", out.Len())
			}
		})
	}
}

func TestResultNote(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Rewritten: 12}, "links=rewritten:12"},
		{Result{}, "links=rewritten:0"},
		{Result{Rewritten: 200, Capped: true}, "links=rewritten:200,capped"},
		{Result{Rewritten: 3, Unchanged: 1}, "links=rewritten:3,unchanged:1"},
		{Result{Skipped: "signed"}, "links=not-rewritten:signed"},
	} {
		if got := tc.r.Note(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestNewRewriterRefuses(t *testing.T) {
	s := testSigner(t, "k1")
	for _, c := range []RewriterConfig{
		{BaseURL: "", Signer: s},
		{BaseURL: "click.example.org", Signer: s},
		{BaseURL: "ftp://click.example.org", Signer: s},
		{BaseURL: "https://click.example.org/?x=1", Signer: s},
		{BaseURL: "https://user@click.example.org", Signer: s},
		{BaseURL: "https://click.example.org/a\"b", Signer: s},
		{BaseURL: testBase},
		{BaseURL: testBase, Signer: s, ExcludeDomains: []string{"nodot"}},
		{BaseURL: testBase, Signer: s, MaxLinks: -1},
	} {
		if _, err := NewRewriter(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
