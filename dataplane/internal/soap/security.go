package soap

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // PasswordDigest is defined with SHA-1 (WSS UsernameToken Profile 1.1 §3.1)
	"encoding/base64"
	"encoding/xml"
	"time"
)

// WS-Security namespaces and token types (OASIS WSS 1.0/1.1).
const (
	nsWSSE       = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	nsWSU        = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	passwordText = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText"
	passwordDig  = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
	nonceBase64  = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)

// wsSecurity is a service's UsernameToken. It has no String or Describe:
// the password must not reach logs or golden files.
type wsSecurity struct {
	username, password string
	digest             bool
}

// header writes the wsse:Security header block. mustUnderstand is not
// set: a service that does not check the token should not fault on it.
func (s *wsSecurity) header(now time.Time) []byte {
	var b bytes.Buffer
	b.WriteString(`<wsse:Security xmlns:wsse="` + nsWSSE + `" xmlns:wsu="` + nsWSU + `"><wsse:UsernameToken><wsse:Username>`)
	_ = xml.EscapeText(&b, []byte(s.username))
	b.WriteString(`</wsse:Username>`)
	if !s.digest {
		b.WriteString(`<wsse:Password Type="` + passwordText + `">`)
		_ = xml.EscapeText(&b, []byte(s.password))
		b.WriteString(`</wsse:Password></wsse:UsernameToken></wsse:Security>`)
		return b.Bytes()
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	created := now.UTC().Format("2006-01-02T15:04:05.000Z")
	h := sha1.New() //nolint:gosec // see the import
	h.Write(nonce)
	h.Write([]byte(created))
	h.Write([]byte(s.password))
	b.WriteString(`<wsse:Password Type="` + passwordDig + `">` + base64.StdEncoding.EncodeToString(h.Sum(nil)) + `</wsse:Password>`)
	b.WriteString(`<wsse:Nonce EncodingType="` + nonceBase64 + `">` + base64.StdEncoding.EncodeToString(nonce) + `</wsse:Nonce>`)
	b.WriteString(`<wsu:Created>` + created + `</wsu:Created></wsse:UsernameToken></wsse:Security>`)
	return b.Bytes()
}
