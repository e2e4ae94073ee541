package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// Basic-auth credentials of a consumer: created with a username (and a
// password, or one is generated), listed without their hashes, deleted by
// id. The password is in no answer but the one that generated it.

// basicRequest is the body of POST /v1/consumers/{name}/basic-auth.
type basicRequest struct {
	Username string `json:"username"`
	// Password is optional: without it one is generated and returned once.
	Password string `json:"password,omitempty"`
}

// createdBasic answers the POST. Password is set only when generated: a
// password the operator chose is not echoed back.
type createdBasic struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Password  string    `json:"password,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Note      string    `json:"note"`
}

func (s *server) listBasicAuth(c echo.Context) error {
	cs, err := catalog.Get(s.Catalog, catalog.Consumers, c.Param("name"))
	if err != nil {
		return err
	}
	creds := cs.Redacted().BasicAuth
	if creds == nil {
		creds = []config.BasicCredential{}
	}
	return c.JSON(http.StatusOK, map[string]any{"consumer": cs.Name, "basic_auth": creds})
}

func (s *server) createBasicAuth(c echo.Context) error {
	body, err := readBody(c, maxObjectBody)
	if err != nil {
		return err
	}
	var req basicRequest
	if err := config.Decode(body, &req); err != nil {
		return err
	}
	pw, rec, ch, err := s.Catalog.CreateBasicCredential(c.Request().Context(), c.Param("name"), req.Username, req.Password, actor(c))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderLocation, c.Request().URL.Path+"/"+rec.ID)
	out := createdBasic{ID: rec.ID, Username: rec.Username, CreatedAt: rec.CreatedAt,
		Note: "Portico keeps only a bcrypt hash of the password and never shows it"}
	if req.Password == "" {
		out.Password = pw
		out.Note = "store this password now: Portico keeps only a bcrypt hash of it and cannot show it again"
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *server) deleteBasicAuth(c echo.Context) error {
	ch, err := s.Catalog.DeleteBasicCredential(c.Request().Context(), c.Param("name"), c.Param("id"), actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	return c.NoContent(http.StatusNoContent)
}
