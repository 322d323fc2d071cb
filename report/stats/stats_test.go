package stats

import (
	"math"
	"math/big"
	"testing"
	"time"
)

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

func TestWilsonKnownValues(t *testing.T) {
	// Reference values computed by hand from the closed form (and matching the tables of
	// Newcombe 1998, method 3, for 95%).
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{20, 20, 0.8389, 1},
		{1, 2, 0.0945, 0.9055},
		{5, 10, 0.2366, 0.7634},
	} {
		iv := Wilson95(c.k, c.n)
		if !near(iv.Low, c.lo, 5e-4) || !near(iv.High, c.hi, 5e-4) {
			t.Errorf("Wilson95(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", c.k, c.n, iv.Low, iv.High, c.lo, c.hi)
		}
		if want := float64(c.k) / float64(c.n); iv.Rate != want {
			t.Errorf("Wilson95(%d, %d).Rate = %v, want %v", c.k, c.n, iv.Rate, want)
		}
	}
}

func TestWilsonProperties(t *testing.T) {
	if iv := Wilson95(0, 0); iv.Low != 0 || iv.High != 1 {
		t.Errorf("n=0: %+v, want [0,1]", iv)
	}
	for n := 1; n <= 60; n++ {
		prevLo := -1.0
		for k := 0; k <= n; k++ {
			iv := Wilson95(k, n)
			if iv.Low < 0 || iv.High > 1 || iv.Low > iv.Rate || iv.Rate > iv.High {
				t.Fatalf("Wilson95(%d,%d) = %+v: not a valid interval around the rate", k, n, iv)
			}
			if iv.Low < prevLo {
				t.Fatalf("Wilson95(%d,%d): lower bound not monotone in k", k, n)
			}
			prevLo = iv.Low
			// Symmetry: the interval of n-k failures mirrors that of k passes.
			m := Wilson95(n-k, n)
			if !near(iv.Low, 1-m.High, 1e-12) || !near(iv.High, 1-m.Low, 1e-12) {
				t.Fatalf("Wilson95(%d,%d) not symmetric with (%d,%d)", k, n, n-k, n)
			}
		}
	}
	// More samples, narrower interval at the same rate.
	if a, b := Wilson95(5, 10), Wilson95(50, 100); !(b.High-b.Low < a.High-a.Low) {
		t.Errorf("interval did not narrow with n: %+v vs %+v", a, b)
	}
	// Out-of-range k is clamped, never produces NaN.
	if iv := Wilson95(12, 10); iv.Rate != 1 || math.IsNaN(iv.Low) {
		t.Errorf("k>n: %+v", iv)
	}
}

// passAtKExact computes 1 - C(n-c,k)/C(n,k) with big integers.
func passAtKExact(n, c, k int) float64 {
	num := new(big.Int).Binomial(int64(n-c), int64(k))
	den := new(big.Int).Binomial(int64(n), int64(k))
	r := new(big.Rat).SetFrac(num, den)
	f, _ := r.Float64()
	return 1 - f
}

func TestPassAtK(t *testing.T) {
	for n := 1; n <= 30; n++ {
		for c := 0; c <= n; c++ {
			for k := 1; k <= n; k++ {
				got, ok := PassAtK(n, c, k)
				if !ok {
					t.Fatalf("PassAtK(%d,%d,%d) not ok", n, c, k)
				}
				want := 1.0
				if n-c >= k {
					want = passAtKExact(n, c, k)
				}
				if !near(got, want, 1e-12) {
					t.Fatalf("PassAtK(%d,%d,%d) = %v, want %v", n, c, k, got, want)
				}
			}
		}
	}
	// pass@1 is the plain pass rate.
	if p, _ := PassAtK(10, 3, 1); !near(p, 0.3, 1e-15) {
		t.Errorf("pass@1 = %v, want 0.3", p)
	}
	// Large n stays finite and exact enough.
	if p, ok := PassAtK(100000, 1, 100); !ok || !near(p, 0.001, 1e-12) {
		t.Errorf("PassAtK(1e5,1,100) = %v %v, want 0.001", p, ok)
	}
	for _, bad := range [][3]int{{0, 0, 1}, {5, 2, 0}, {5, 2, 6}, {-1, 0, 1}} {
		if _, ok := PassAtK(bad[0], bad[1], bad[2]); ok {
			t.Errorf("PassAtK%v accepted", bad)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.9, 4.6}, {0.25, 2}} {
		if got, ok := Quantile(xs, c.q); !ok || !near(got, c.want, 1e-12) {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if xs[0] != 5 {
		t.Error("Quantile sorted its input in place")
	}
	if m, _ := Median([]float64{1, 2, 3, 10}); m != 2.5 {
		t.Errorf("median of even count = %v, want 2.5", m)
	}
	if p, _ := P90([]float64{7}); p != 7 {
		t.Errorf("p90 of one = %v", p)
	}
	if _, ok := Median(nil); ok {
		t.Error("median of nothing is ok")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	xs := []float64{35, 15, 50, 20, 40}
	for _, c := range []struct{ p, want float64 }{{5, 15}, {30, 20}, {40, 20}, {50, 35}, {99, 50}, {100, 50}, {0, 15}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if xs[0] != 35 || xs[4] != 40 {
		t.Error("Percentile reordered its input")
	}
	ds := []time.Duration{3, 1, 2}
	if got := Percentile(ds, 50); got != 2 {
		t.Errorf("median of durations = %v, want 2", got)
	}
	if got := Percentile([]time.Duration(nil), 99); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
	// 60 samples: the 99th percentile is the 60th (ceil(59.4)), not the 59th.
	many := make([]int, 60)
	for i := range many {
		many[i] = i + 1
	}
	if got := Percentile(many, 99); got != 60 {
		t.Errorf("p99 of 1..60 = %v, want 60", got)
	}
}
