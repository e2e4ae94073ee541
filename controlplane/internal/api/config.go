package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

func (s *server) exportConfig(c echo.Context) error {
	cfg, rev := s.Catalog.Export()
	// Private keys never leave through the admin API; an import of this
	// export keeps the stored keys (see catalog.keepCertificateKeys).
	for i := range cfg.Certificates {
		cfg.Certificates[i] = cfg.Certificates[i].Redacted()
	}
	for i := range cfg.Services {
		cfg.Services[i] = cfg.Services[i].Redacted()
	}
	for i := range cfg.Consumers {
		cfg.Consumers[i] = cfg.Consumers[i].Redacted()
	}
	for i := range cfg.Issuers {
		cfg.Issuers[i] = cfg.Issuers[i].Redacted()
	}
	c.Response().Header().Set("ETag", etag(rev))
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(rev, 10))
	return c.JSON(http.StatusOK, apiv1.Export{Revision: rev, Config: cfg})
}

// importConfig is PUT /v1/config. The body is a Config document, or the
// export envelope {"revision":N,"config":{...}} so that an export can be
// edited and sent back directly. If-Match takes the revision ETag.
func (s *server) importConfig(c echo.Context) error {
	body, err := readBody(c, maxConfigBody)
	if err != nil {
		return err
	}
	var cfg config.Config
	var env struct {
		Revision int64          `json:"revision"`
		Config   *config.Config `json:"config"`
	}
	if isEnvelope(body) {
		if err := config.Decode(body, &env); err != nil {
			return err
		}
		if env.Config == nil {
			return config.Invalid("config", "is required")
		}
		cfg = *env.Config
	} else if err := config.Decode(body, &cfg); err != nil {
		return err
	}
	dryRun, err := strconv.ParseBool(firstNonEmpty(c.QueryParam("dry_run"), "false"))
	if err != nil {
		return badParam("dry_run", "must be true or false")
	}
	ifRev := revisionCondition(c)
	if err := fetchAllSOAP(c.Request().Context(), &cfg); err != nil {
		return err
	}
	res, err := s.Catalog.Import(c.Request().Context(), &cfg, dryRun, ifRev, actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(res.Revision))
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(res.Revision, 10))
	return c.JSON(http.StatusOK, res.ImportResult)
}

// isEnvelope peeks at the first key: an export starts with "revision" or
// "config", a bare Config with "services", "routes" or "consumers".
func isEnvelope(body []byte) bool {
	s := strings.TrimLeft(string(body[:min(len(body), 64)]), " \t\r\n{")
	return strings.HasPrefix(s, `"revision"`) || strings.HasPrefix(s, `"config"`)
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// revisionCondition reads If-Match as a revision ETag (whole-config writes).
func revisionCondition(c echo.Context) *int64 {
	v := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if v == "" || v == "*" {
		return nil
	}
	rev := parseETag(v, 0)
	return &rev
}
