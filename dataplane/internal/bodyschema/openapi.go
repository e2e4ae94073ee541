package bodyschema

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// compileOperation compiles a route's OpenAPI operation with the function
// the control plane validated it with; the document was checked when the
// route was written, so an error here means input that skipped validation.
func compileOperation(route string, v *config.RouteValidate) (stage.Stage, error) {
	op, err := config.CompileOpenAPIOperation(v.OpenAPI, v.Operation)
	if err != nil {
		if errors.Is(err, config.ErrOperation) {
			return nil, fmt.Errorf("validate.operation: %w", err)
		}
		return nil, fmt.Errorf("validate.openapi: %w", err)
	}
	out := &Route{
		schema:       op.Body,
		query:        op.Query,
		headers:      op.Headers,
		operation:    v.Operation,
		method:       op.Method,
		template:     strings.Split(strings.Trim(op.Path, "/"), "/"),
		path:         op.PathParams,
		bodyOptional: !op.BodyRequired,
	}
	if v.ReportResponses && len(op.Responses) > 0 {
		out.resp = newResponses(route, op.ResponseSchema)
	}
	return out, nil
}
