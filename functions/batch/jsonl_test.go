package batch

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var jsonlSeeds = []string{
	`[5.1,3.5,1.4,0.2]`,
	` [ -0 , 1e3 , 2.5E-3 ] `,
	`[]`,
	`{"id":"r1","features":[1,2]}`,
	`{ "features" : [1] , "id" : 7 }`,
	`{"id":-1.5e2,"features":[0]}`,
	`{"features":[1],"id":"a","features":[2,3]}`,
	`{"id":"say \"hi\"","features":[1]}`,
	`{"ID":"x","Features":[1]}`,
	`{"id":"x","features":[1],"extra":true}`,
	`{"id":null,"features":[1]}`,
	`{"id":"x"}`,
	`{"features":null}`,
	`[1e400]`, `[01]`, `[1.]`, `[.5]`, `[+1]`, `[1,]`, `[1 2]`, `[NaN]`, `[1]x`, `{}`, `{"id":"x",}`,
	"[1,\t2]", `{"id":"` + "\x01" + `","features":[1]}`, `{"id":"\xff","features":[1]}`,
}

// The fast path reads exactly what encoding/json reads, or steps aside.
func FuzzJSONLFastPath(f *testing.F) {
	for _, seed := range jsonlSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		text := strings.TrimSpace(line) // as jsonlReader.next hands it over
		if text == "" {
			return
		}
		j := &jsonlReader{}
		features, id, ok := j.parseFast([]byte(text))
		if !ok {
			return
		}
		want, wantID, err := parseJSON([]byte(text))
		require.NoError(t, err, "%q: the fast path read a row encoding/json refuses", text)
		require.Equal(t, len(want), len(features), "%q", text)
		for i := range want {
			require.Equal(t, math.Float64bits(want[i]), math.Float64bits(features[i]), "%q: feature %d", text, i)
		}
		require.Equal(t, string(wantID), string(id), "%q: id", text)
	})
}

func TestJSONLFastPathTakesTheCommonForms(t *testing.T) {
	j := &jsonlReader{}
	for _, text := range []string{`[5.1,3.5,1.4,0.2]`, `{"id":"r1","features":[5.1,3.5,1.4,0.2]}`, ` { "features" : [5.1, 3.5, 1.4, 0.2], "id": 12 } `} {
		features, _, ok := j.parseFast([]byte(text))
		require.True(t, ok, text)
		require.Equal(t, []float64{5.1, 3.5, 1.4, 0.2}, slices.Clone(features), text)
	}
	for _, text := range []string{`{"ID":"x","features":[1]}`, `{"id":"a\"b","features":[1]}`, `[1e400]`, `{"features":null}`} {
		_, _, ok := j.parseFast([]byte(text))
		require.False(t, ok, "%s is left to encoding/json", text)
	}
}
