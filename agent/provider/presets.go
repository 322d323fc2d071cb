package provider

import (
	"fmt"
	"slices"
	"strings"
)

// Preset is a named OpenAI-compatible endpoint.
type Preset struct {
	// Name is what users write before the colon of a model id ("novita:qwen/…").
	Name string
	// BaseURL is the endpoint's base URL; the chat-completions path is appended to it.
	BaseURL string
	// BaseURLEnv, when set and non-empty in the environment, overrides BaseURL.
	BaseURLEnv string
	// KeyEnv is the environment variable holding the API key.
	KeyEnv string
	// KeyRequired is set when calls without a key cannot succeed.
	KeyRequired bool
	// Models are well-known model ids of the endpoint (for completion and docs; not a whitelist).
	Models []string
	// DefaultModel is used when a model id names only the provider.
	DefaultModel string
}

// Provider names understood in model ids.
const (
	PresetNovita = "novita"
	PresetOpenAI = "openai"
	PresetOllama = "ollama"
	// Custom is the name of an endpoint given only by its base URL.
	Custom = "custom"
	// ReplayName is the provider name of recorded transcripts: "replay:PATH".
	ReplayName = "replay"
)

// NovitaModels are the models offered by the tutorial this product grew from.
var novitaModels = []string{
	"meta-llama/llama-3.3-70b-instruct",
	"deepseek/deepseek-v3.2-exp",
	"qwen/qwen3-coder-30b-a3b-instruct",
	"openai/gpt-oss-120b",
	"moonshotai/kimi-k2-instruct",
}

// Presets returns the built-in endpoint presets: novita, openai and ollama.
func Presets() []Preset {
	return []Preset{
		{
			Name:         PresetNovita,
			BaseURL:      "https://api.novita.ai/openai",
			KeyEnv:       "NOVITA_API_KEY",
			KeyRequired:  true,
			Models:       slices.Clone(novitaModels),
			DefaultModel: "qwen/qwen3-coder-30b-a3b-instruct",
		},
		{
			Name:        PresetOpenAI,
			BaseURL:     "https://api.openai.com/v1",
			BaseURLEnv:  "OPENAI_BASE_URL",
			KeyEnv:      "OPENAI_API_KEY",
			KeyRequired: true,
		},
		{
			Name:    PresetOllama,
			BaseURL: "http://localhost:11434/v1",
		},
	}
}

// LookupPreset returns the preset of that name.
func LookupPreset(name string) (Preset, bool) {
	for _, p := range Presets() {
		if p.Name == name {
			return p, true
		}
	}
	return Preset{}, false
}

// ModelRef is a model id split into the provider that serves it and the model id the endpoint knows.
type ModelRef struct {
	// Provider is a preset name, ReplayName, or empty when the id named none.
	Provider string
	// Model is the endpoint's model id (for replay: the transcript's path).
	Model string
}

// String returns the canonical form: "provider:model", or the bare model without a provider.
func (r ModelRef) String() string {
	if r.Provider == "" {
		return r.Model
	}
	return r.Provider + ":" + r.Model
}

// ParseModel splits a model id. The text before the first colon is taken as the provider only
// when it is a known provider name (novita, openai, ollama, custom, replay), so ids that contain
// colons of their own stay whole: "llama3:8b" is a bare model, "ollama:llama3:8b" is model
// "llama3:8b" of ollama. "novita:" alone means novita's default model.
func ParseModel(s string) (ModelRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ModelRef{}, fmt.Errorf("empty model id")
	}
	if strings.ContainsAny(s, "\n\r\t") {
		return ModelRef{}, fmt.Errorf("model id %q contains whitespace", s)
	}
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok || !isProviderName(prefix) {
		return ModelRef{Model: s}, nil
	}
	if rest == "" {
		if p, ok := LookupPreset(prefix); ok && p.DefaultModel != "" {
			return ModelRef{Provider: prefix, Model: p.DefaultModel}, nil
		}
		return ModelRef{}, fmt.Errorf("model id %q names provider %s but no model", s, prefix)
	}
	return ModelRef{Provider: prefix, Model: rest}, nil
}

func isProviderName(s string) bool {
	if s == Custom || s == ReplayName {
		return true
	}
	_, ok := LookupPreset(s)
	return ok
}
