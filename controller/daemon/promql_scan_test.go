package daemon_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A scan of PromQL just deep enough to find what the monitoring pack
// names: metric selectors with their label matchers, and the labels of
// by, without, on, ignoring, group_left and group_right. The Prometheus
// module's own parser would pull one of the largest modules there is into
// go.mod for one test; this scan refuses what it does not understand
// instead of guessing, so a rule it cannot read fails the test.

// matcher is one label matcher of a selector.
type matcher struct{ label, op, value string }

// selector is one metric named in an expression.
type selector struct {
	metric   string
	matchers []matcher
}

// scanned is what one expression names.
type scanned struct {
	selectors []selector
	// grouping are the labels of by, without, on, ignoring and
	// group_left/right; by those of by alone (what an aggregation keeps).
	grouping, by []string
	// labelValues are the label_values(metric, label) calls of a
	// dashboard variable.
	labelValues []selector
}

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'v' variable, 'p' punctuation or operator
	text string
}

func lexPromQL(expr string) ([]token, error) {
	var out []token
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' && j+1 < len(expr) {
					j++
				}
				b.WriteByte(expr[j])
			}
			if j == len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{'s', b.String()})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(expr) && (expr[j] == '.' || isIdent(expr[j], false)) {
				j++
			}
			out = append(out, token{'n', expr[i:j]})
			i = j
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			out = append(out, token{'i', expr[i:j]})
			i = j
		case c == '$':
			// A Grafana variable: $name or ${name}.
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				end := strings.IndexByte(expr[j:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated variable at %d", i)
				}
				j += end + 1
			} else {
				for j < len(expr) && isIdent(expr[j], false) {
					j++
				}
			}
			out = append(out, token{'v', expr[i:j]})
			i = j
		default:
			op := string(c)
			if i+1 < len(expr) && slices.Contains([]string{"=~", "!~", "!=", "==", ">=", "<="}, expr[i:i+2]) {
				op = expr[i : i+2]
			}
			out = append(out, token{'p', op})
			i += len(op)
		}
	}
	return out, nil
}

// scanPromQL finds the selectors and grouping labels of expr.
func scanPromQL(expr string) (scanned, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return scanned{}, err
	}
	var out scanned
	at := func(i int, kind byte, text string) bool {
		return i < len(toks) && toks[i].kind == kind && (text == "" || toks[i].text == text)
	}
	// labelList reads "( a, b )" from i and returns the labels and the
	// index after it.
	labelList := func(i int) ([]string, int, error) {
		var labels []string
		for i++; !at(i, 'p', ")"); i++ {
			switch {
			case at(i, 'i', ""):
				labels = append(labels, toks[i].text)
			case at(i, 'p', ","):
			default:
				return nil, i, fmt.Errorf("unexpected %q in a label list", tokText(toks, i))
			}
		}
		return labels, i + 1, nil
	}
	// matchers reads "{ l op "v", ... }" from i.
	matchers := func(i int) ([]matcher, int, error) {
		var ms []matcher
		for i++; !at(i, 'p', "}"); {
			if !at(i, 'i', "") || !at(i+1, 'p', "") || !(at(i+2, 's', "") || at(i+2, 'v', "")) {
				return nil, i, fmt.Errorf("cannot read the matcher at %q", tokText(toks, i))
			}
			if op := toks[i+1].text; !slices.Contains([]string{"=", "!=", "=~", "!~"}, op) {
				return nil, i, fmt.Errorf("unknown matcher operator %q", op)
			}
			ms = append(ms, matcher{toks[i].text, toks[i+1].text, toks[i+2].text})
			i += 3
			if at(i, 'p', ",") {
				i++
			}
		}
		return ms, i + 1, nil
	}
	for i := 0; i < len(toks); {
		t := toks[i]
		switch {
		case t.kind == 'i' && t.text == "label_values" && at(i+1, 'p', "("):
			// label_values(metric, label) or label_values(label).
			args, next, err := labelList(i + 1)
			if err != nil {
				return out, err
			}
			switch len(args) {
			case 1:
				out.labelValues = append(out.labelValues, selector{matchers: []matcher{{label: args[0]}}})
			case 2:
				out.labelValues = append(out.labelValues, selector{metric: args[0], matchers: []matcher{{label: args[1]}}})
			default:
				return out, fmt.Errorf("label_values with %d arguments", len(args))
			}
			i = next
		case t.kind == 'i' && slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, t.text) && at(i+1, 'p', "("):
			labels, next, err := labelList(i + 1)
			if err != nil {
				return out, err
			}
			out.grouping = append(out.grouping, labels...)
			if t.text == "by" {
				out.by = append(out.by, labels...)
			}
			i = next
		case t.kind == 'i' && strings.HasPrefix(t.text, "phoenix_"):
			sel := selector{metric: t.text}
			i++
			if at(i, 'p', "{") {
				ms, next, err := matchers(i)
				if err != nil {
					return out, err
				}
				sel.matchers, i = ms, next
			}
			out.selectors = append(out.selectors, sel)
		case t.kind == 'i' && at(i+1, 'p', "{"):
			// Another project's metric: not this check's business.
			_, next, err := matchers(i + 1)
			if err != nil {
				return out, err
			}
			i = next
		case t.kind == 'p' && t.text == "{":
			// A selector without a metric name (or one by __name__) hides
			// what it selects from this check: refused.
			return out, fmt.Errorf("a selector without a metric name at %q", tokText(toks, i+1))
		default:
			i++
		}
	}
	return out, nil
}

func tokText(toks []token, i int) string {
	if i < len(toks) {
		return toks[i].text
	}
	return "the end"
}

// The checker finds each kind of mistake in an expression, and passes
// what Prometheus and Grafana accept.
func TestPackCheckerOnExpressions(t *testing.T) {
	cat := catalogue{}
	cat.add("phoenix_reconciles_total", map[string]string{"group": "web", "result": "ok"})
	cat.add("phoenix_reconciles_total", map[string]string{"group": "web", "result": "error"})
	cat.add("phoenix_replica_info", map[string]string{"replica": "a"})
	cat.add("phoenix_reconcile_duration_seconds_bucket", map[string]string{"group": "web", "le": "0.005"})
	for _, tc := range []struct {
		name, expr, legend string
		want               string // a problem to find; "" for none
	}{
		{"plain", `sum by (group) (rate(phoenix_reconciles_total{result="error"}[15m]))`, "{{group}}", ""},
		{"alternation", `phoenix_reconciles_total{result=~"ok|error", group=~"$group"}`, "", ""},
		{"free regexp", `phoenix_reconciles_total{result=~"e.*"}`, "", ""},
		{"grafana variables", `rate(phoenix_reconciles_total{group=~"${group}"}[$__rate_interval])`, "", ""},
		{"histogram", `histogram_quantile(0.9, sum by (group, le) (rate(phoenix_reconcile_duration_seconds_bucket[5m])))`, "{{group}}", ""},
		{"join", `phoenix_reconciles_total * on (instance) group_left (replica) phoenix_replica_info`, "{{replica}}", ""},
		{"another job's metric", `up{job="phoenix"} == 0 or absent(phoenix_reconciles_total)`, "", ""},
		{"a name in a string only", `label_replace(phoenix_reconciles_total, "x", "phoenix_nothing", "", "")`, "", ""},
		{"label_values", `label_values(phoenix_reconciles_total, group)`, "", ""},
		{"unknown metric", `rate(phoenix_reconcile_total[5m])`, "", "phoenix_reconcile_total is not on /metrics"},
		{"unknown label", `phoenix_reconciles_total{outcome="ok"}`, "", `has no label "outcome"`},
		{"unknown value", `phoenix_reconciles_total{result="failed"}`, "", `never takes the value "failed"`},
		{"unknown alternative", `phoenix_reconciles_total{result=~"ok|failed"}`, "", `never takes the value "failed"`},
		{"grouping label", `sum by (zone) (phoenix_reconciles_total)`, "", `grouping label "zone"`},
		{"legend label dropped", `sum by (group) (phoenix_reconciles_total)`, "{{result}}", `names label "result"`},
		{"nameless selector", `count({__name__=~"phoenix_.*"})`, "", "without a metric name"},
		{"label_values label", `label_values(phoenix_reconciles_total, zone)`, "", `has no label "zone"`},
		{"label_values without a metric", `label_values(group)`, "", "without a metric"},
		{"no phoenix metric", `up == 0`, "", "names no phoenix_ metric"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &packChecker{cat: cat}
			kept := c.expr("test", tc.expr)
			c.templated("test", tc.legend, legendLabel, kept)
			got := strings.Join(c.problems, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("%s: problems %s", tc.expr, got)
			case tc.want != "" && !strings.Contains(got, tc.want):
				t.Errorf("%s: problems %q, want one with %q", tc.expr, got, tc.want)
			}
		})
	}
}
