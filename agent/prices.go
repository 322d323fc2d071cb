package agent

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/agentrun/agent/agent/provider"
)

// Price is what a model costs, in US dollars per million tokens.
type Price struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

// Cost returns the price of a usage in US dollars.
func (p Price) Cost(u provider.Usage) float64 {
	return (float64(u.PromptTokens)*p.Input + float64(u.CompletionTokens)*p.Output) / 1e6
}

// Prices is a price table, read from YAML:
//
//	# US dollars per million tokens
//	models:
//	  novita:qwen/qwen3-coder-30b-a3b-instruct: {input: 0.07, output: 0.28}
//	  gpt-4o-mini: {input: 0.15, output: 0.60}
//
// A key may carry a provider prefix; Lookup tries the model id as given, then without its prefix.
type Prices struct {
	models map[string]Price
}

// ParsePrices reads a price table; unknown fields, negative or non-finite prices are errors.
func ParsePrices(data []byte) (*Prices, error) {
	var doc struct {
		Models map[string]Price `yaml:"models"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parsing prices: %w", err)
	}
	for m, p := range doc.Models {
		for _, v := range []float64{p.Input, p.Output} {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("parsing prices: model %s: price %v is not a non-negative number", m, v)
			}
		}
	}
	return &Prices{models: doc.Models}, nil
}

// LoadPrices reads a price table file.
func LoadPrices(path string) (*Prices, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading prices: %w", err)
	}
	p, err := ParsePrices(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Lookup returns the price of a model id ("novita:qwen/…" or a bare id).
func (p *Prices) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	if pr, ok := p.models[model]; ok {
		return pr, true
	}
	if ref, err := provider.ParseModel(model); err == nil {
		if pr, ok := p.models[ref.Model]; ok {
			return pr, true
		}
	}
	return Price{}, false
}

// Budget is a run-wide budget shared by the tasks of a run: tokens and dollars spent by every
// model call. Once spent, tasks end with max_tokens or max_cost before their next model call.
// Safe for concurrent use.
type Budget struct {
	maxCost   float64
	maxTokens int64

	mu     sync.Mutex
	cost   float64
	tokens int64
}

// NewBudget returns a budget; zero means no limit.
func NewBudget(maxCost float64, maxTokens int64) *Budget {
	return &Budget{maxCost: maxCost, maxTokens: maxTokens}
}

// MaxCost returns the dollar limit (0: none).
func (b *Budget) MaxCost() float64 { return b.maxCost }

// Add records spending.
func (b *Budget) Add(tokens int64, cost float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens += tokens
	b.cost += cost
}

// Spent returns what was spent so far.
func (b *Budget) Spent() (tokens int64, cost float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens, b.cost
}

// exhausted says whether the budget is spent, and which part.
func (b *Budget) exhausted() (reason Reason, detail string, ok bool) {
	if b == nil {
		return "", "", false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxCost > 0 && b.cost >= b.maxCost {
		return ReasonMaxCost, fmt.Sprintf("the run's budget of $%.4f is spent ($%.4f)", b.maxCost, b.cost), true
	}
	if b.maxTokens > 0 && b.tokens >= b.maxTokens {
		return ReasonMaxTokens, fmt.Sprintf("the run's budget of %d tokens is spent (%d)", b.maxTokens, b.tokens), true
	}
	return "", "", false
}
