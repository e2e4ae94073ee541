package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portico-gw/portico/shared/client"
)

// kindInfo is one kind of object as get and delete know it.
type kindInfo struct {
	path    string // collection path under /v1
	columns []column
}

// column is one column of a list table.
type column struct {
	header string
	value  func(o map[string]any) string
}

var kinds = map[string]kindInfo{
	"services": {"/v1/services", []column{
		{"NAME", field("name")},
		{"TARGETS", func(o map[string]any) string {
			if c, ok := o["consul"].(map[string]any); ok {
				return "consul:" + str(c["service"])
			}
			var t []string
			for _, x := range anyList(o["targets"]) {
				if m, ok := x.(map[string]any); ok {
					t = append(t, str(m["url"]))
				}
			}
			return strings.Join(t, ",")
		}},
		{"PROTOCOL", field("protocol")},
		{"VERSION", field("version")},
	}},
	"routes": {"/v1/routes", []column{
		{"NAME", field("name")},
		{"HOSTS", joined("hosts")},
		{"METHODS", joined("methods")},
		{"PATHS", joined("paths")},
		{"SERVICE", field("service")},
		{"VERSION", field("version")},
	}},
	"consumers": {"/v1/consumers", []column{
		{"NAME", field("name")},
		{"GROUPS", joined("groups")},
		{"API KEYS", func(o map[string]any) string { return fmt.Sprint(len(anyList(o["api_keys"]))) }},
		{"VERSION", field("version")},
	}},
	"issuers": {"/v1/issuers", []column{
		{"NAME", field("name")},
		{"ISSUER", field("issuer")},
		{"ALGORITHMS", joined("algorithms")},
		{"VERSION", field("version")},
	}},
	"certificates": {"/v1/certificates", []column{
		{"NAME", field("name")},
		{"SNIS", joined("snis")},
		{"NOT AFTER", func(o map[string]any) string {
			st, _ := o["status"].(map[string]any)
			return str(st["not_after"])
		}},
		{"VERSION", field("version")},
	}},
	"tokens": {"/v1/tokens", []column{
		{"NAME", field("name")},
		{"ROLE", field("role")},
		{"KINDS", joined("kinds")},
		{"EXPIRES", field("expires_at")},
		{"PREFIX", field("prefix")},
		{"CREATED BY", field("created_by")},
	}},
}

// kindAliases maps what an operator may type to a kind.
var kindAliases = map[string]string{
	"service": "services", "svc": "services", "route": "routes", "rt": "routes",
	"consumer": "consumers", "issuer": "issuers", "certificate": "certificates", "cert": "certificates",
	"certs": "certificates", "token": "tokens",
}

func kindOf(arg string) (string, kindInfo, error) {
	k := strings.ToLower(arg)
	if a, ok := kindAliases[k]; ok {
		k = a
	}
	if k == "global" {
		return k, kindInfo{path: "/v1/global"}, nil
	}
	info, ok := kinds[k]
	if !ok {
		return "", kindInfo{}, fmt.Errorf("unknown kind %q: want %s or global", arg, strings.Join(kindNames(), ", "))
	}
	return k, info, nil
}

func kindNames() []string {
	var n []string
	for k := range kinds {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func field(name string) func(map[string]any) string {
	return func(o map[string]any) string { return scalar(o[name]) }
}

func joined(name string) func(map[string]any) string {
	return func(o map[string]any) string {
		var s []string
		for _, v := range anyList(o[name]) {
			s = append(s, scalar(v))
		}
		return strings.Join(s, ",")
	}
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func str(v any) string { s, _ := v.(string); return s }

func scalar(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return fmt.Sprint(v)
	case json.Number:
		return v.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// completeKinds offers kinds, then (for the name) the objects of that kind.
func (a *app) completeKinds(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return append(kindNames(), "global"), cobra.ShellCompDirectiveNoFileComp
	}
	if len(args) > 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.objectNames(cmd, args[0]), cobra.ShellCompDirectiveNoFileComp
}

func (a *app) objectNames(cmd *cobra.Command, kind string) []string {
	_, info, err := kindOf(kind)
	if err != nil || info.columns == nil {
		return nil
	}
	c, err := a.client()
	if err != nil {
		return nil
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	raw, _, err := c.GetRaw(ctx, info.path, nil)
	if err != nil {
		return nil
	}
	var l struct {
		Items []map[string]any `json:"items"`
	}
	if json.Unmarshal(raw, &l) != nil {
		return nil
	}
	var names []string
	for _, o := range l.Items {
		names = append(names, str(o["name"]))
	}
	return names
}

func (a *app) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "get KIND [NAME]",
		Short:             "List objects of a kind (a table), or show one (YAML); kinds: services, routes, consumers, issuers, certificates, tokens, global",
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: a.completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, info, err := kindOf(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			path := info.path
			if len(args) == 2 {
				if kind == "global" {
					return fmt.Errorf("global has no name: porticoctl get global")
				}
				path += "/" + url.PathEscape(args[1])
			}
			raw, _, err := c.GetRaw(ctx, path, nil)
			if err != nil {
				return err
			}
			var v any
			dec := json.NewDecoder(bytes.NewReader(raw))
			if err := dec.Decode(&v); err != nil {
				return fmt.Errorf("decode %s: %w", path, err)
			}
			if len(args) == 2 || kind == "global" {
				return a.print(v, "yaml")
			}
			if a.format("table") != "table" {
				return a.print(v, "table")
			}
			var l struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(raw, &l); err != nil {
				return err
			}
			return a.table(info.columns, l.Items)
		},
	}
}

func (a *app) deleteCmd() *cobra.Command {
	var ifVersion int64
	cmd := &cobra.Command{
		Use:               "delete KIND NAME",
		Short:             "Delete an object (or revoke a token)",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, info, err := kindOf(args[0])
			if err != nil {
				return err
			}
			if kind == "global" {
				return fmt.Errorf("the global section cannot be deleted; apply a file without it to clear it")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var resp *client.Response
			if kind == "tokens" {
				resp, err = c.DeleteToken(ctx, args[1])
			} else {
				var opts []client.WriteOption
				if ifVersion > 0 {
					opts = append(opts, client.IfMatch(ifVersion))
				}
				resp, err = client.Delete(ctx, c, info.path, args[1], opts...)
			}
			if err != nil {
				return err
			}
			if a.format("text") == "json" {
				return writeJSON(a.io.Out, map[string]any{"deleted": args[1], "kind": kind, "revision": resp.Revision})
			}
			fmt.Fprintf(a.io.Out, "Deleted %s %s: revision %d.\n", strings.TrimSuffix(kind, "s"), args[1], resp.Revision)
			return nil
		},
	}
	cmd.Flags().Int64Var(&ifVersion, "if-version", 0, "delete only if the object is at this version (If-Match)")
	return cmd
}

func (a *app) purgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "purge ROUTE",
		Short: "Empty a route's response cache on every data plane (and in Redis)",
		Args:  cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return a.objectNames(cmd, "routes"), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, resp, err := c.PurgeRouteCache(ctx, args[0])
			if err != nil {
				return err
			}
			if a.format("text") == "json" {
				return writeJSON(a.io.Out, map[string]any{"route": r.Name, "version": r.Version, "revision": resp.Revision})
			}
			fmt.Fprintf(a.io.Out, "Purged the cache of route %s: revision %d (data planes drop its entries as they apply it).\n", r.Name, resp.Revision)
			return nil
		},
	}
}

// format is --output, or def.
func (a *app) format(def string) string { return firstOf(a.output, def) }

// print writes v as YAML or JSON (--output, or def; a table format falls
// back to YAML for a single object).
func (a *app) print(v any, def string) error {
	out, err := a.render(v, def)
	if err != nil {
		return err
	}
	_, err = a.io.Out.Write(out)
	return err
}

func (a *app) render(v any, def string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	switch f := a.format(def); f {
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err != nil {
			return nil, err
		}
		buf.WriteByte('\n')
		return buf.Bytes(), nil
	case "yaml", "table", "text":
		return toYAML(b)
	default:
		return nil, fmt.Errorf("--output %q: want table, yaml or json", f)
	}
}

// table writes rows under the columns' headers, aligned.
func (a *app) table(cols []column, rows []map[string]any) error {
	tw := tabwriter.NewWriter(a.io.Out, 0, 8, 2, ' ', 0)
	h := make([]string, len(cols))
	for i, c := range cols {
		h[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(h, "\t"))
	for _, r := range rows {
		v := make([]string, len(cols))
		for i, c := range cols {
			v[i] = c.value(r)
			if v[i] == "" {
				v[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(v, "\t"))
	}
	return tw.Flush()
}
