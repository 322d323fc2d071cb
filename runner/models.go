package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
)

// Models gives each job the model it runs with.
type Models interface {
	// Model returns the model id a task runs with, as recorded in its results; with the spec's
	// digest and the epoch it keys a finished task for Resume. An error means the task cannot run
	// (no model named anywhere, no recorded transcript for it).
	Model(s *spec.Spec) (string, error)
	// Provider returns the provider for one job of the task with that model id. Replay providers
	// serve one conversation, so every job gets its own.
	Provider(s *spec.Spec, model string) (provider.Provider, error)
}

// ErrNoModel is returned by Models.Model when no model is named for a task.
var ErrNoModel = errors.New("no model")

// Endpoints are the models of OpenAI-compatible endpoints: each task's resolved model id (spec,
// agent.yaml or --model), opened with provider.Open and shared by every job of the run that uses
// it (providers are safe for concurrent use; Config.Limiter bounds the calls in flight across
// them).
type Endpoints struct {
	// Config configures every provider; set its Limiter to share one across the run.
	Config provider.Config

	mu    sync.Mutex
	cache map[string]provider.Provider
}

// Model implements Models.
func (e *Endpoints) Model(s *spec.Spec) (string, error) {
	if strings.TrimSpace(s.Model) == "" {
		return "", fmt.Errorf("task %s: %w: set model in the spec or agent.yaml, or pass --model (or --replay DIR to replay recorded transcripts)", s.Name, ErrNoModel)
	}
	return s.Model, nil
}

// Provider implements Models.
func (e *Endpoints) Provider(s *spec.Spec, model string) (provider.Provider, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.cache[model]; ok {
		return p, nil
	}
	p, _, err := provider.Open(model, e.Config)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", model, err)
	}
	if _, replay := p.(*provider.Replay); replay {
		return p, nil // one conversation each: never shared
	}
	if e.cache == nil {
		e.cache = map[string]provider.Provider{}
	}
	e.cache[model] = p
	return p, nil
}

// Replays are recorded transcripts played back instead of a model: Path is a transcript file
// (every task replays it) or a directory holding <task name>.json for each task. The recorded tool
// calls really run in a fresh sandbox; the results say it was a replay.
type Replays struct {
	Path string

	once  sync.Once
	isDir bool
	err   error

	mu    sync.Mutex
	cache map[string]*transcript.Transcript
}

func (r *Replays) stat() error {
	r.once.Do(func() {
		fi, err := os.Stat(r.Path)
		if err != nil {
			r.err = fmt.Errorf("replay: %w", err)
			return
		}
		r.isDir = fi.IsDir()
	})
	return r.err
}

// File returns the transcript file a task replays.
func (r *Replays) File(s *spec.Spec) (string, error) {
	if err := r.stat(); err != nil {
		return "", err
	}
	if !r.isDir {
		return r.Path, nil
	}
	f := filepath.Join(r.Path, s.Name+".json")
	if _, err := os.Stat(f); err != nil {
		return "", fmt.Errorf("task %s: %w: no recorded transcript %s", s.Name, ErrNoModel, f)
	}
	return f, nil
}

// Model implements Models: "replay:" and the transcript's path.
func (r *Replays) Model(s *spec.Spec) (string, error) {
	f, err := r.File(s)
	if err != nil {
		return "", err
	}
	return provider.ReplayName + ":" + f, nil
}

// Provider implements Models. Each job gets its own replay of the (cached) transcript.
func (r *Replays) Provider(s *spec.Spec, model string) (provider.Provider, error) {
	ref, err := provider.ParseModel(model)
	if err != nil || ref.Provider != provider.ReplayName {
		return nil, fmt.Errorf("replay: model %q is not a replay", model)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tr, ok := r.cache[ref.Model]
	if !ok {
		if tr, err = transcript.Load(ref.Model); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if r.cache == nil {
			r.cache = map[string]*transcript.Transcript{}
		}
		r.cache[ref.Model] = tr
	}
	return provider.NewReplay(tr, ref.Model), nil
}
