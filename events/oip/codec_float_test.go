package oip

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExactFloatAgreesWithStrconv: the decoder's fast path reads every
// number as strconv.ParseFloat does, bit for bit: shortest FP32 and FP64
// texts, random decimals of every length, and float32 rounding boundaries.
func TestExactFloatAgreesWithStrconv(t *testing.T) {
	random := rand.New(rand.NewPCG(5, 6))
	var tokens []string
	for range 200_000 {
		tokens = append(tokens,
			strconv.FormatFloat(float64(random.Float32()*float32(math.Pow(10, float64(random.IntN(12)-6)))), 'f', -1, 32),
			strconv.FormatFloat(random.NormFloat64()*math.Pow(10, float64(random.IntN(20)-10)), 'f', -1, 64))
		digits := 1 + random.IntN(19)
		number := strconv.FormatUint(random.Uint64()%uint64(math.Pow10(digits)), 10)
		if point := random.IntN(len(number) + 1); point < len(number) {
			number = number[:point] + "." + number[point:]
			if point == 0 {
				number = "0" + number
			}
		}
		if random.IntN(2) == 0 {
			number = "-" + number
		}
		tokens = append(tokens, number)
	}
	for e := -8; e < 24; e++ { // the float32 midpoints that have few decimals
		for j := range 50 {
			boundary := (float64(1<<23+j) + 0.5) * math.Ldexp(1, e-23)
			tokens = append(tokens, strconv.FormatFloat(boundary, 'f', -1, 64))
		}
	}
	tokens = append(tokens, "0", "-0", "0.0", "-0.0", "8388608.5", "8388609.5", "16777216", "16777217", "0.1", "0.00000001", "99999999.99999999")
	for _, token := range tokens {
		for _, bits := range []int{32, 64} {
			want, err := strconv.ParseFloat(token, bits)
			require.NoError(t, err)
			s := &scanner{buf: []byte(token)}
			var got float64
			if bits == 32 {
				v, err := parseFP32(s)
				require.NoError(t, err, token)
				got = float64(v)
			} else {
				got, err = parseFP64(s)
				require.NoError(t, err, token)
			}
			require.Equal(t, math.Float64bits(want), math.Float64bits(got), fmt.Sprintf("%s as FP%d: %v, want %v", token, bits, got, want))
		}
	}
}
