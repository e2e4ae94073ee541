package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
)

// storeStatus is GET /v1/store: where the configuration is stored, the
// revision and epoch this control plane serves, and the store reset that
// blocks writes, if any.
type storeStatus struct {
	Store    string `json:"store"`
	Revision int64  `json:"revision"`
	Epoch    string `json:"epoch,omitempty"`
	// PrevEpoch is the epoch Epoch replaced (an adopted store).
	PrevEpoch string `json:"prev_epoch,omitempty"`
	// Writable is false while a store reset is detected.
	Writable bool                `json:"writable"`
	Reset    *catalog.StoreReset `json:"reset,omitempty"`
}

func (s *server) storeStatus(c echo.Context) error {
	cur := s.Catalog.Current().State
	r := s.Catalog.Reset()
	return c.JSON(http.StatusOK, storeStatus{
		Store: store.Describe(s.Catalog.Store()), Revision: cur.Revision,
		Epoch: cur.Epoch.ID, PrevEpoch: cur.Epoch.Prev, Writable: r == nil, Reset: r,
	})
}

// adoptStore is POST /v1/store/adopt[?config=store|last-seen]: the operator
// accepts a store found emptied or rolled back. A new epoch starts at the
// store's revision + 1 and data planes move to it. With config=store (the
// default) what the store lost stays lost (re-seed it with PUT /v1/config
// from an export); with config=last-seen the new revision holds the
// configuration this control plane last served. 409 when there is no reset
// to accept.
func (s *server) adoptStore(c echo.Context) error {
	var lastSeen bool
	switch c.QueryParam("config") {
	case "", "store":
	case "last-seen":
		lastSeen = true
	default:
		return badParam("config", "must be store (keep what the store holds) or last-seen (re-seed with the configuration this control plane last served)")
	}
	ch, err := s.Catalog.Adopt(c.Request().Context(), actor(c), lastSeen)
	if err != nil {
		return err
	}
	cur := s.Catalog.Current().State
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	c.Response().Header().Set(apiv1.HeaderEpoch, cur.Epoch.ID)
	return c.JSON(http.StatusOK, storeStatus{
		Store: store.Describe(s.Catalog.Store()), Revision: cur.Revision,
		Epoch: cur.Epoch.ID, PrevEpoch: cur.Epoch.Prev, Writable: s.Catalog.Reset() == nil,
	})
}
