package blocker

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

func alert(name string, extra ...string) model.Metric {
	m := model.Metric{"__name__": "ALERTS", "alertname": model.LabelValue(name), "alertstate": "firing"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[model.LabelName(extra[i])] = model.LabelValue(extra[i+1])
	}
	return m
}

func vector(ms ...model.Metric) model.Vector {
	var v model.Vector
	for _, m := range ms {
		v = append(v, &model.Sample{Metric: m, Value: 1})
	}
	return v
}

func TestJudge(t *testing.T) {
	const q = `ALERTS{alertstate="firing"}`
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name    string
		query   string
		res     model.Value
		blocked bool
		series  int
		reason  string // exact, when set
		within  []string
		err     string
	}{
		{name: "no series", query: q, res: model.Vector{}},
		{name: "empty matrix", query: q, res: model.Matrix{}},
		{
			name: "one series", query: q, res: vector(alert("DiskFull", "instance", "db1")),
			blocked: true, series: 1,
			reason: `Prometheus query ALERTS{alertstate="firing"} returns 1 series: ALERTS{alertname="DiskFull",alertstate="firing",instance="db1"}`,
		},
		{
			name: "series named in sorted order", query: q, res: vector(alert("B"), alert("A")),
			blocked: true, series: 2,
			reason: `Prometheus query ALERTS{alertstate="firing"} returns 2 series: ALERTS{alertname="A",alertstate="firing"}, ALERTS{alertname="B",alertstate="firing"}`,
		},
		{
			name: "three named, the rest counted", query: q, res: vector(alert("E"), alert("D"), alert("C"), alert("B"), alert("A")),
			blocked: true, series: 5,
			reason: `Prometheus query ALERTS{alertstate="firing"} returns 5 series: ALERTS{alertname="A",alertstate="firing"}, ALERTS{alertname="B",alertstate="firing"}, ALERTS{alertname="C",alertstate="firing"} and 2 more`,
		},
		{
			name: "long labels stay within the limit and keep the count", query: q,
			res:     vector(alert("A", "summary", long), alert("B", "summary", long), alert("C", "summary", long), alert("D")),
			blocked: true, series: 4,
			within: []string{`returns 4 series: ALERTS{alertname="A"`, "... and 3 more"},
		},
		{
			name: "a long query is shortened", query: "up == 0 or " + long, res: vector(alert("A")),
			blocked: true, series: 1,
			within: []string{"Prometheus query up == 0 or xxx", `... returns 1 series: ALERTS{alertname="A",alertstate="firing"}`},
		},
		{
			name: "a matrix blocks by its series", query: "ALERTS[5m]",
			res:     model.Matrix{&model.SampleStream{Metric: alert("A")}},
			blocked: true, series: 1,
			reason: `Prometheus query ALERTS[5m] returns 1 series: ALERTS{alertname="A",alertstate="firing"}`,
		},
		{
			name: "a series without a name", query: "vector(1)", res: vector(model.Metric{}),
			blocked: true, series: 1, reason: `Prometheus query vector(1) returns 1 series: {}`,
		},
		{name: "scalar zero allows", query: "count(ALERTS) > bool 0", res: &model.Scalar{Value: 0}},
		{
			name: "scalar non-zero blocks", query: "count(ALERTS) > bool 0", res: &model.Scalar{Value: 1},
			blocked: true, reason: "Prometheus query count(ALERTS) > bool 0 returns 1",
		},
		{
			name: "scalar NaN blocks", query: "NaN", res: &model.Scalar{Value: model.SampleValue(math.NaN())},
			blocked: true, reason: "Prometheus query NaN returns NaN",
		},
		{name: "nil scalar", query: "1", res: (*model.Scalar)(nil), err: "empty scalar"},
		{name: "string", query: `"x"`, res: &model.String{Value: "x"}, err: "*model.String"},
		{name: "nothing", query: "1", res: nil, err: "type <nil>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := judge(tc.query, tc.res)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Blocked != tc.blocked || v.Series != tc.series {
				t.Errorf("blocked %v with %d series, want %v with %d", v.Blocked, v.Series, tc.blocked, tc.series)
			}
			if !tc.blocked && v.Reason != "" {
				t.Errorf("reason %q for a verdict that does not block", v.Reason)
			}
			if tc.reason != "" && v.Reason != tc.reason {
				t.Errorf("reason\n %s\nwant\n %s", v.Reason, tc.reason)
			}
			for _, s := range tc.within {
				if !strings.Contains(v.Reason, s) {
					t.Errorf("reason %q lacks %q", v.Reason, s)
				}
			}
			if len(v.Reason) > MaxReason || !utf8.ValidString(v.Reason) {
				t.Errorf("reason of %d bytes (valid UTF-8: %v): %q", len(v.Reason), utf8.ValidString(v.Reason), v.Reason)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "..."},
		{"abcdefgh", 6, "abc..."},
		// "é" is two bytes; a cut inside it moves back to its start.
		{"aéééé", 6, "aé..."},
		{"aéééé", 5, "a..."},
	} {
		if got := shorten(tc.s, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("shorten(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestRedactor(t *testing.T) {
	const pass = "s3cr/t p@ss"
	user := url.UserPassword("phoenix", pass)
	redact := redactor(user)
	for _, in := range []string{
		fmt.Sprintf(`Post "http://%s@prom:9090/api/v1/query": EOF`, user),
		`Post "http://phoenix:***@prom:9090/api/v1/query": EOF`,
		`Post "http://phoenix:` + pass + `@prom:9090/api/v1/query": EOF`,
		"the password " + pass + " and again " + url.QueryEscape(pass) + " and " + url.PathEscape(pass),
	} {
		out := redact(in)
		for _, leak := range []string{pass, url.QueryEscape(pass), url.PathEscape(pass), "phoenix:", "phoenix@"} {
			if strings.Contains(out, leak) {
				t.Errorf("redact(%q) = %q, still has %q", in, out, leak)
			}
		}
	}
	if got := redact(`Post "http://phoenix:***@prom:9090/api/v1/query": EOF`); got != `Post "http://prom:9090/api/v1/query": EOF` {
		t.Errorf("the URL should read as if it had no userinfo, got %q", got)
	}
	if got := redactor(nil)("unchanged"); got != "unchanged" {
		t.Errorf("without userinfo the text changed: %q", got)
	}
}
