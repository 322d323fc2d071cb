package provider

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoProvider is returned by Open when neither the model id, the config nor the environment
// says which endpoint to use.
var ErrNoProvider = errors.New("no model provider")

// Open returns the provider for a model id: "replay:PATH" loads a recorded transcript; a
// "novita:", "openai:", "ollama:" or "custom:" prefix picks that preset (cfg.BaseURL and cfg.APIKey
// still override it). A bare id uses cfg.Preset, or cfg.BaseURL, or else the first preset whose key
// is set in the environment (NOVITA_API_KEY, then OPENAI_API_KEY). It returns the parsed model id
// with the provider resolved, so transcripts name the endpoint actually used.
func Open(model string, cfg Config) (Provider, ModelRef, error) {
	ref, err := ParseModel(model)
	if err != nil {
		return nil, ModelRef{}, err
	}
	if ref.Provider == ReplayName {
		r, err := LoadReplay(ref.Model)
		if err != nil {
			return nil, ref, fmt.Errorf("replay: %w", err)
		}
		return r, ref, nil
	}
	switch {
	case ref.Provider != "":
		if ref.Provider != Custom {
			cfg.Preset = ref.Provider
		} else {
			cfg.Preset = ""
		}
	case cfg.Preset != "" || cfg.BaseURL != "":
		ref.Provider = cfg.Preset
		if ref.Provider == "" {
			ref.Provider = Custom
		}
	default:
		getenv := cfg.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		for _, p := range Presets() {
			if p.KeyEnv != "" && strings.TrimSpace(getenv(p.KeyEnv)) != "" {
				cfg.Preset, ref.Provider = p.Name, p.Name
				break
			}
		}
		if cfg.Preset == "" {
			return nil, ref, fmt.Errorf("%w for model %q: prefix it with novita:, openai: or ollama:, "+
				"give a base URL, or set NOVITA_API_KEY or OPENAI_API_KEY", ErrNoProvider, model)
		}
	}
	p, err := New(cfg)
	if err != nil {
		return nil, ref, err
	}
	return p, ref, nil
}
