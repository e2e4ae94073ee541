// Command demo-soap is a small SOAP 1.1 service for trying Portico's
// JSON-to-SOAP translation (make run, compose): a document/literal quote
// service whose WSDL it serves at /quotes?wsdl, with a declared fault for
// an unknown symbol ("NOPE"). It reads requests with the gateway's own
// hardened XML parser; it is a demo, not a SOAP stack (the tests use
// spyne and zeep).
package main

import (
	"context"
	_ "embed"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/envflag"
	"github.com/portico-gw/portico/shared/wsdl"
)

//go:embed quotes.wsdl
var quotesWSDL []byte

const (
	nsEnv = "http://schemas.xmlsoap.org/soap/envelope/"
	nsTNS = "urn:portico:demo:quotes"
)

func main() { cli.Main("demo-soap", run) }

func run(args []string) error {
	fs := envflag.New("demo-soap")
	listen := fs.String("listen", "DEMO_SOAP_LISTEN", "127.0.0.1:9002", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/quotes", quotes)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "demo-soap: QuoteService on %s (WSDL at /quotes?wsdl)\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func quotes(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		_, _ = w.Write(quotesWSDL)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fault(w, "Client", "the request could not be read", "")
		return
	}
	env, err := wsdl.ParseXML(body, wsdl.DocumentLimits)
	var b *wsdl.Node
	if err == nil && env.Name == (xml.Name{Space: nsEnv, Local: "Envelope"}) {
		b = env.Element(nsEnv, "Body")
	}
	if b == nil || len(b.Children) != 1 {
		fault(w, "Client", "not a SOAP 1.1 envelope with one Body element", "")
		return
	}
	op := b.Children[0]
	var out strings.Builder
	switch op.Name {
	case xml.Name{Space: nsTNS, Local: "GetQuote"}:
		sym := text(op, "symbol")
		if sym == "NOPE" {
			fault(w, "Client.UnknownSymbol", "no such symbol: "+sym,
				`<tns:UnknownSymbol xmlns:tns="`+nsTNS+`"><tns:symbol>`+esc(sym)+`</tns:symbol></tns:UnknownSymbol>`)
			return
		}
		out.WriteString(`<tns:GetQuoteResponse xmlns:tns="` + nsTNS + `">`)
		quote(&out, sym, text(op, "side"), text(op, "day"), 1)
		out.WriteString(`</tns:GetQuoteResponse>`)
	case xml.Name{Space: nsTNS, Local: "GetQuotes"}:
		out.WriteString(`<tns:GetQuotesResponse xmlns:tns="` + nsTNS + `">`)
		for i, s := range op.Elements(nsTNS, "symbol") {
			quote(&out, strings.TrimSpace(s.Text), "", "", i+1)
		}
		out.WriteString(`</tns:GetQuotesResponse>`)
	default:
		fault(w, "Client", "unknown operation "+op.Name.Local, "")
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="`+nsEnv+`"><soap:Body>`+out.String()+`</soap:Body></soap:Envelope>`)
}

// quote writes a made-up quote for sym.
func quote(out *strings.Builder, sym, side, day string, n int) {
	if side == "" {
		side = "buy"
	}
	if day == "" {
		day = time.Now().UTC().Format("2006-01-02")
	}
	price := 10 + len(sym)*3 + n
	fmt.Fprintf(out, `<tns:quote><tns:symbol>%s</tns:symbol><tns:price>%d.25</tns:price><tns:volume>%d</tns:volume><tns:side>%s</tns:side><tns:day>%s</tns:day><tns:open>true</tns:open></tns:quote>`,
		esc(sym), price, 1000*n, esc(side), esc(day))
}

func text(n *wsdl.Node, local string) string {
	if c := n.Element(nsTNS, local); c != nil {
		return strings.TrimSpace(c.Text)
	}
	return ""
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func fault(w http.ResponseWriter, code, msg, detail string) {
	if detail != "" {
		detail = "<detail>" + detail + "</detail>"
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="`+nsEnv+`"><soap:Body><soap:Fault><faultcode>soap:`+code+`</faultcode><faultstring>`+esc(msg)+`</faultstring>`+detail+`</soap:Fault></soap:Body></soap:Envelope>`)
}
