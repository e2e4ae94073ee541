package api

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/wsdl"
)

// wsdlClient fetches WSDLs; its timeout is a backstop behind the write's
// own (wsdl.FetchTimeout).
var wsdlClient = &http.Client{Timeout: wsdl.FetchTimeout}

// fetchSOAP fetches, at write time, the documents a soap service's WSDL
// needs (the WSDL itself when given by URL, and whatever it imports by
// URL) into soap.documents, so that the snapshot carries them and data
// planes never fetch. URL entries are fetched anew on every write; others
// (an inline WSDL's relative imports) are kept as given. field is the
// path of the service in the submitted document ("" for a single object).
func fetchSOAP(ctx context.Context, svc *config.Service, field string) error {
	sp := svc.SOAP
	if svc.Protocol != config.ProtocolSOAP || sp == nil || strings.TrimSpace(sp.WSDL) == "" {
		return nil // validation says what is missing
	}
	given := map[string]string{}
	for k, v := range sp.Documents {
		if !config.IsDocumentURL(k) {
			given[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(ctx, wsdl.FetchTimeout)
	defer cancel()
	var got map[string]string
	var err error
	if sp.WSDLIsURL() {
		got, err = wsdl.Fetch(ctx, wsdlClient, strings.TrimSpace(sp.WSDL), nil, given)
	} else {
		got, err = wsdl.Fetch(ctx, wsdlClient, "", []byte(sp.WSDL), given)
	}
	if err != nil {
		return config.Invalid(joinField(field, "soap.wsdl"), "%v", err)
	}
	c := *sp
	c.Documents = given
	maps.Copy(c.Documents, got)
	if len(c.Documents) == 0 {
		c.Documents = nil
	}
	svc.SOAP = &c
	return nil
}

// fetchAllSOAP fetches the WSDLs of an imported configuration's services.
func fetchAllSOAP(ctx context.Context, cfg *config.Config) error {
	for i := range cfg.Services {
		if err := fetchSOAP(ctx, &cfg.Services[i], fmt.Sprintf("services[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func joinField(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}
