package api

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// createdKey is the one response that ever contains a key in clear.
type createdKey struct {
	ID        string    `json:"id"`
	Key       string    `json:"key"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	Note      string    `json:"note"`
}

func (s *server) listAPIKeys(c echo.Context) error {
	cs, err := catalog.Get(s.Catalog, catalog.Consumers, c.Param("name"))
	if err != nil {
		return err
	}
	keys := cs.APIKeys
	if keys == nil {
		keys = []config.APIKey{}
	}
	return c.JSON(http.StatusOK, map[string]any{"consumer": cs.Name, "api_keys": keys})
}

// importedKey answers an import: the caller has the key, so it is not
// sent back.
type importedKey struct {
	ID        string    `json:"id"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// createAPIKey makes a key, or imports the one in the body ({"key": ...}):
// 201 when added, 200 when the consumer already had that key.
func (s *server) createAPIKey(c echo.Context) error {
	body, err := readBody(c, 4<<10)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		var in struct {
			Key string `json:"key"`
		}
		if err := config.Decode(body, &in); err != nil {
			return err
		}
		rec, existed, ch, err := s.Catalog.ImportAPIKey(c.Request().Context(), c.Param("name"), in.Key, actor(c))
		if err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
		h.Set(echo.HeaderLocation, c.Request().URL.Path+"/"+rec.ID)
		code := http.StatusCreated
		if existed {
			code = http.StatusOK
		}
		return c.JSON(code, importedKey{ID: rec.ID, Prefix: rec.Prefix, CreatedAt: rec.CreatedAt})
	}
	key, rec, ch, err := s.Catalog.CreateAPIKey(c.Request().Context(), c.Param("name"), actor(c))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderLocation, c.Request().URL.Path+"/"+rec.ID)
	return c.JSON(http.StatusCreated, createdKey{ID: rec.ID, Key: key, Prefix: rec.Prefix, CreatedAt: rec.CreatedAt,
		Note: "store this key now: Portico keeps only its hash and cannot show it again"})
}

func (s *server) deleteAPIKey(c echo.Context) error {
	ch, err := s.Catalog.DeleteAPIKey(c.Request().Context(), c.Param("name"), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	return c.NoContent(http.StatusNoContent)
}

func (s *server) getGlobal(c echo.Context) error {
	g, rev := s.Catalog.Global()
	c.Response().Header().Set("ETag", etag(rev))
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(rev, 10))
	return c.JSON(http.StatusOK, g)
}

func (s *server) putGlobal(c echo.Context) error {
	body, err := readBody(c, maxObjectBody)
	if err != nil {
		return err
	}
	var g config.Global
	if err := config.Decode(body, &g); err != nil {
		return err
	}
	ifRev := revisionCondition(c)
	ch, err := s.Catalog.PutGlobal(c.Request().Context(), g, ifRev, actor(c))
	if err != nil {
		return err
	}
	// The answer describes the revision this write produced (or the one it
	// found unchanged), not whatever is current by the time we answer.
	c.Response().Header().Set("ETag", etag(ch.Revision))
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	return c.JSON(http.StatusOK, g)
}

// purgeRouteCache empties a route's response cache on every data plane (and
// in the shared Redis cache) by moving the route to a new revision; it
// answers with the route as it now is.
func (s *server) purgeRouteCache(c echo.Context) error {
	pre, err := precondition(c)
	if err != nil {
		return err
	}
	r, ch, err := s.Catalog.PurgeRouteCache(c.Request().Context(), c.Param("name"), pre, actor(c))
	if err != nil {
		return err
	}
	return writeObject(c, http.StatusOK, r, ch.Revision)
}
