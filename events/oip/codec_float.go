package oip

// exactFloat returns the value of a JSON number token that the scanner has
// checked (an optional '-', digits, an optional fraction, no exponent) when
// one correctly rounded floating-point operation gives it, and false
// otherwise, for strconv to read. The mantissa m, all the token's digits,
// must fit 53 bits, and the token must have at most maxFraction digits after
// the point: then m and 10^k are exact float64 values and m / 10^k is the
// correctly rounded float64 of the decimal (Clinger's fast path).
//
// For FP32 the float64 result is rounded again, which is exact when k ≤ 8
// and the value is below 2^24: a float32 rounding boundary is a dyadic
// M = N·2^(e-24) with N < 2^25 odd, so a decimal m/10^k other than M lies at
// least 2^(e-24)/10^k from it, more than the float64 rounding can move it
// (2^(e-52) in [2^e, 2^(e+1))) as long as 10^k < 2^28. Both roundings then
// fall on the same side of every boundary, and a decimal that is itself a
// boundary is a float64, rounded to even once.
func exactFloat(token []byte, maxFraction int, below float64) (float64, bool) {
	i, negative := 0, false
	if len(token) > 0 && token[0] == '-' {
		i, negative = 1, true
	}
	var mantissa uint64
	digits, fraction, point := 0, 0, false
	for ; i < len(token); i++ {
		c := token[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 19 {
				return 0, false // may not fit 64 bits, let alone 53
			}
			mantissa = mantissa*10 + uint64(c-'0')
			if mantissa > 0 {
				digits++
			}
			if point {
				fraction++
			}
		case c == '.':
			point = true
		default: // an exponent
			return 0, false
		}
	}
	if mantissa >= 1<<53 || fraction > maxFraction {
		return 0, false
	}
	value := float64(mantissa) / powersOf10[fraction]
	if value >= below {
		return 0, false
	}
	if negative {
		value = -value
	}
	return value, true
}

// powersOf10 are exact float64 values.
var powersOf10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// The fast paths of FP32 and FP64 (see exactFloat).
const (
	maxFraction32, below32 = 8, 1 << 24
	maxFraction64, below64 = 22, 1 << 53
)
