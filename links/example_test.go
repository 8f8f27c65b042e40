package links_test

import (
	"fmt"
	"strings"

	"github.com/foxproxy/foxproxy/links"
)

func Example() {
	x, err := links.New(links.Config{Redirectors: links.DefaultRedirectors()})
	if err != nil {
		panic(err)
	}
	msg := "From: news@sender.example\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"\r\n" +
		`<a href="https://www.google.com/url?q=https://B%C3%BCcher.example/sale&amp;sa=D">Sale</a>` + "\r\n" +
		"<p>Or visit http://3232235777/login</p>\r\n"
	res := x.Extract(strings.NewReader(msg))
	for _, u := range res.URLs {
		fmt.Println(u.Source, u.Normalized)
	}
	for _, k := range res.Keys() {
		fmt.Println(k.Kind, k.Name)
	}
	// Output:
	// href https://www.google.com/url?q=https://B%C3%BCcher.example/sale&sa=D
	// redirect https://xn--bcher-kva.example/sale
	// html http://192.168.1.1/login
	// domain google.com
	// domain xn--bcher-kva.example
	// host www.google.com
	// ip 192.168.1.1
}

func ExampleNormalize() {
	u, err := links.Normalize("HTTP://user@WWW.Bücher.example.:8080/a b?q=1#top")
	if err != nil {
		panic(err)
	}
	fmt.Println(u.Normalized)
	fmt.Println(u.Host, u.Domain, u.Obfuscated)
	// Output:
	// http://www.xn--bcher-kva.example/a%20b?q=1
	// www.xn--bcher-kva.example xn--bcher-kva.example true
}
