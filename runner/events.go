package runner

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/agentrun/agent/agent"
)

// EventType names what happened in a run.
type EventType string

// Event types, in the order a run produces them. Agent events carry the agent loop's event
// (package agent) of one task epoch.
const (
	// EventRunStart: the run begins (Total jobs, Reused results from an earlier session).
	EventRunStart EventType = "run_start"
	// EventTaskStart: a task epoch begins.
	EventTaskStart EventType = "task_start"
	// EventPhase: a task epoch enters a phase (Phase: sandbox, seed, setup, agent, checks,
	// artifacts, kill).
	EventPhase EventType = "phase"
	// EventAgent: something happened in a task's agent loop (Agent).
	EventAgent EventType = "agent"
	// EventTaskEnd: a task epoch ended (Result).
	EventTaskEnd EventType = "task_end"
	// EventRunEnd: the run ended (Summary).
	EventRunEnd EventType = "run_end"
)

// Event is one thing that happened in a run, for a console or a program watching the run.
type Event struct {
	Type  EventType `json:"type"`
	Time  time.Time `json:"time"`
	Task  string    `json:"task,omitempty"`
	Epoch int       `json:"epoch,omitempty"`
	// Phase is the phase a task enters (EventPhase).
	Phase string `json:"phase,omitempty"`
	// Total and Reused count the jobs of the run (EventRunStart).
	Total  int `json:"total,omitempty"`
	Reused int `json:"reused,omitempty"`
	// Dir is the results directory (EventRunStart, EventRunEnd).
	Dir string `json:"dir,omitempty"`
	// Agent is the agent loop's event (EventAgent).
	Agent *agent.Event `json:"agent,omitempty"`
	// Result is how the task epoch ended (EventTaskEnd).
	Result *TaskResult `json:"result,omitempty"`
	// Summary is the run's outcome (EventRunEnd).
	Summary *Summary `json:"summary,omitempty"`
}

// JSONLObserver writes each event as one JSON line to w (agent deltas only with withDeltas). Safe
// for the concurrent tasks of a run; write errors are dropped (events are a view, the results
// directory is the record).
func JSONLObserver(w io.Writer, withDeltas bool) func(Event) {
	var mu sync.Mutex
	return func(e Event) {
		if e.Type == EventAgent && e.Agent != nil && e.Agent.Type == agent.EventDelta && !withDeltas {
			return
		}
		b, err := json.Marshal(e)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(append(b, '\n'))
	}
}

// Observers returns an observer that passes each event to every non-nil observer, in order.
func Observers(obs ...func(Event)) func(Event) {
	var list []func(Event)
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	return func(e Event) {
		for _, o := range list {
			o(e)
		}
	}
}
