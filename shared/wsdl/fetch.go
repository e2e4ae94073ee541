package wsdl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// FetchTimeout bounds the fetch of one WSDL with everything it imports.
const FetchTimeout = 10 * time.Second

// Fetch reads the WSDL at location (an http(s) URL), or the inline
// document doc when location is "", with every document it imports, and
// returns the documents by resolved location. given are documents the
// caller already has (an inline WSDL's relative imports); those are used
// as they are and not returned. Each document is bounded by
// DocumentLimits.MaxBytes, the whole by MaxDocuments and MaxTotalBytes,
// and the whole fetch by ctx (callers add FetchTimeout). Only http and
// https locations are fetched, and redirects are followed only to those.
func Fetch(ctx context.Context, client *http.Client, location string, doc []byte, given map[string]string) (map[string]string, error) {
	if client == nil {
		client = http.DefaultClient
	}
	got := map[string]string{}
	load := func(loc string) ([]byte, error) {
		if b, ok := given[loc]; ok {
			return []byte(b), nil
		}
		b, err := get(ctx, client, loc)
		if err != nil {
			return nil, err
		}
		got[loc] = string(b)
		return b, nil
	}
	if location != "" {
		b, err := load(location)
		if err != nil {
			return nil, err
		}
		doc = b
	}
	if _, err := Parse(doc, location, load); err != nil {
		return nil, err
	}
	return got, nil
}

// get fetches one document.
func get(ctx context.Context, client *http.Client, loc string) ([]byte, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL, and no such document was given", loc)
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return fmt.Errorf("more than 5 redirects")
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s refused", req.URL.Scheme)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/xml, application/xml, application/wsdl+xml, */*;q=0.5")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: HTTP %d", u.Redacted(), resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(DocumentLimits.MaxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u.Redacted(), err)
	}
	if len(b) > DocumentLimits.MaxBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", u.Redacted(), DocumentLimits.MaxBytes, ErrLimit)
	}
	return b, nil
}
