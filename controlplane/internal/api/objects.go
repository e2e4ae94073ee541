package api

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/shared/admintoken"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// registerKind mounts the CRUD endpoints of one kind of object.
func registerKind[T any](s *server, g *echo.Group, path string, k *catalog.Kind[T]) {
	read := access{role: admintoken.Read, kind: k.Kind}
	write := access{role: admintoken.Write, kind: k.Kind}
	s.handle(g, http.MethodGet, path, read, func(c echo.Context) error {
		items, rev := catalog.List(s.Catalog, k)
		if items == nil {
			items = []T{}
		}
		c.Response().Header().Set("ETag", etag(rev))
		return c.JSON(http.StatusOK, apiv1.List[T]{Revision: rev, Items: presentAll(s, items)})
	})
	s.handle(g, http.MethodPost, path, write, func(c echo.Context) error {
		obj, err := decodeObject[T](c)
		if err != nil {
			return err
		}
		if err := config.ValidateName(nameOf(&obj)); err != nil {
			return err
		}
		res, err := catalog.Put(c.Request().Context(), s.Catalog, k, obj, catalog.CreateOnly, catalog.Precondition{}, actor(c))
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderLocation, c.Request().URL.Path+"/"+nameOf(&res.Object))
		s.present(&res.Object)
		return writeObject(c, http.StatusCreated, res.Object, res.Change.Revision)
	})
	s.handle(g, http.MethodGet, path+"/:name", read, func(c echo.Context) error {
		obj, err := catalog.Get(s.Catalog, k, c.Param("name"))
		if err != nil {
			return err
		}
		s.present(&obj)
		return writeObject(c, http.StatusOK, obj, s.Catalog.Current().State.Revision)
	})
	s.handle(g, http.MethodPut, path+"/:name", write, func(c echo.Context) error {
		pre, err := precondition(c)
		if err != nil {
			return err
		}
		obj, err := decodeObject[T](c)
		if err != nil {
			return err
		}
		name := c.Param("name")
		switch body := nameOf(&obj); {
		case body == "":
			k.SetName(&obj, name)
		case body != name:
			return config.Invalid("name", "%q does not match the name in the URL (%q)", body, name)
		}
		if err := config.ValidateName(name); err != nil {
			return err
		}
		res, err := catalog.Put(c.Request().Context(), s.Catalog, k, obj, catalog.Upsert, pre, actor(c))
		if err != nil {
			return err
		}
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
		}
		s.present(&res.Object)
		return writeObject(c, status, res.Object, res.Change.Revision)
	})
	s.handle(g, http.MethodDelete, path+"/:name", write, func(c echo.Context) error {
		pre, err := precondition(c)
		if err != nil {
			return err
		}
		change, err := catalog.Delete(c.Request().Context(), s.Catalog, k, c.Param("name"), pre, actor(c))
		if err != nil {
			return err
		}
		c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(change.Revision, 10))
		return c.NoContent(http.StatusNoContent)
	})
}

func writeObject[T any](c echo.Context, status int, obj T, rev int64) error {
	h := c.Response().Header()
	h.Set("ETag", etag(metaOf(&obj).Version))
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(rev, 10))
	return c.JSON(status, obj)
}

func nameOf[T any](obj *T) string {
	return any(obj).(config.Object).ObjectName()
}

func metaOf[T any](obj *T) *config.Meta {
	return any(obj).(config.Object).ObjectMeta()
}

// decodeObject strictly decodes one object from the request body.
func decodeObject[T any](c echo.Context) (T, error) {
	var obj T
	body, err := readBody(c, maxObjectBody)
	if err != nil {
		return obj, err
	}
	if err := config.Decode(body, &obj); err != nil {
		return obj, err
	}
	if svc, ok := any(&obj).(*config.Service); ok {
		// A SOAP service's WSDL is fetched now, never by data planes.
		return obj, fetchSOAP(c.Request().Context(), svc, "")
	}
	return obj, nil
}

func readBody(c echo.Context, limit int64) ([]byte, error) {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if mt = strings.TrimSpace(strings.ToLower(mt)); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return body, nil
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// precondition parses If-Match and If-None-Match. An entity tag that is not
// one of ours can never match, so it is kept as an impossible version and the
// write fails with 412 rather than silently ignoring the condition.
func precondition(c echo.Context) (catalog.Precondition, error) {
	var p catalog.Precondition
	h := c.Request().Header
	if v := strings.TrimSpace(h.Get("If-None-Match")); v != "" {
		if v != "*" {
			return p, echo.NewHTTPError(http.StatusBadRequest, `only "If-None-Match: *" is supported on writes`)
		}
		p.IfNoneMatchAny = true
	}
	for _, field := range h.Values("If-Match") {
		for _, tag := range strings.Split(field, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "" {
				continue
			}
			if tag == "*" {
				p.IfMatchAny = true
				continue
			}
			p.IfMatch = append(p.IfMatch, parseETag(tag, 1))
		}
	}
	return p, nil
}

// parseETag reads one of our entity tags ("3" or W/"3"): an object version
// (lowest 1) or a configuration revision (lowest 0). Anything else comes
// back as -1, which matches nothing, so the write fails with 412 instead
// of the condition being ignored.
func parseETag(tag string, lowest int64) int64 {
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(tag, "W/"), `"`), 10, 64)
	if err != nil || v < lowest {
		return -1
	}
	return v
}
