// Package stats holds the statistics of an evaluation: pass rates with a Wilson score interval,
// the unbiased pass@k estimator, and quantiles of samples such as wall times (interpolated, for
// reports, and by nearest rank, for benchmarks' p50/p99).
package stats

import (
	"cmp"
	"math"
	"slices"
)

// Z95 is the standard normal quantile for a two-sided 95% interval.
const Z95 = 1.959963984540054

// Interval is a proportion with the bounds of a confidence interval around it.
type Interval struct {
	// Rate is the observed proportion k/n.
	Rate float64 `json:"rate"`
	// Low and High bound the interval, within [0, 1].
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// Wilson returns the proportion k/n with its Wilson score interval for the normal quantile z.
// Unlike the normal approximation it stays inside [0, 1] and is meaningful at k = 0 or k = n, which
// is where small evaluations usually are. For n = 0 it returns the uninformative [0, 1].
func Wilson(k, n int, z float64) Interval {
	if n <= 0 {
		return Interval{Rate: 0, Low: 0, High: 1}
	}
	k = min(max(k, 0), n)
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	lo, hi := center-half, center+half
	// The exact bounds at the edges are 0 and 1; keep rounding from moving them.
	if k == 0 {
		lo = 0
	}
	if k == n {
		hi = 1
	}
	return Interval{Rate: p, Low: max(lo, 0), High: min(hi, 1)}
}

// Wilson95 is Wilson with a 95% confidence level.
func Wilson95(k, n int) Interval { return Wilson(k, n, Z95) }

// PassAtK is the unbiased estimator of pass@k from n samples of which c passed (Chen et al., 2021):
// the probability that at least one of k samples drawn without replacement from the n passes,
// 1 - C(n-c, k) / C(n, k). It is computed as a product so that large n neither overflows nor loses
// precision. ok is false when k is outside 1..n.
func PassAtK(n, c, k int) (p float64, ok bool) {
	if n <= 0 || k < 1 || k > n {
		return 0, false
	}
	c = min(max(c, 0), n)
	if n-c < k {
		return 1, true // every draw of k holds a passing sample
	}
	// C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
	q := 1.0
	for i := n - c + 1; i <= n; i++ {
		q *= 1 - float64(k)/float64(i)
	}
	return 1 - q, true
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of xs by linear interpolation between closest ranks
// (the definition of R's type 7 and NumPy's default). xs is not modified. ok is false for no data.
func Quantile(xs []float64, q float64) (v float64, ok bool) {
	if len(xs) == 0 || math.IsNaN(q) {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q = min(max(q, 0), 1)
	h := q * float64(len(s)-1)
	lo := int(math.Floor(h))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (h-float64(lo))*(s[hi]-s[lo]), true
}

// Median is Quantile(xs, 0.5).
func Median(xs []float64) (float64, bool) { return Quantile(xs, 0.5) }

// P90 is Quantile(xs, 0.9).
func P90(xs []float64) (float64, bool) { return Quantile(xs, 0.9) }

// Percentile returns the p-th percentile (0 < p ≤ 100) of xs by nearest rank: the smallest sample
// with at least p% of the samples at or below it, so always one of the samples (what benchmarks
// report as p50 and p99). xs is not modified; no samples give the zero value.
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	var zero T
	if len(xs) == 0 || math.IsNaN(p) {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(float64(len(s)) * p / 100))
	return s[min(max(rank, 1), len(s))-1]
}
