package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
)

// Versions of the JSON files of a results directory (the schema_version field). A reader refuses
// a major version it does not know; fields are only added within one version.
const (
	RunSchema     = "agent.run/v1"
	SummarySchema = "agent.summary/v1"
	ResultSchema  = "agent.result/v1"
	ChecksSchema  = "agent.checks/v1"
)

// File names in a results directory.
const (
	RunFile        = "run.json"
	SummaryFile    = "summary.json"
	ReportFile     = "report.md"
	TasksDir       = "tasks"
	ResultFile     = "result.json"
	ChecksFile     = "checks.json"
	TranscriptFile = "transcript.json"
	SetupLogFile   = "setup.log"
	FilesDir       = "files"
)

// Status is how a task ended.
type Status string

// Statuses.
const (
	// StatusPassed: the agent completed and every check passed.
	StatusPassed Status = "passed"
	// StatusFailed: the agent completed and a check failed.
	StatusFailed Status = "failed"
	// StatusError: the task could not be carried out or graded; Reason says why.
	StatusError Status = "error"
)

// Reason says why a task ended in error. The agent loop's end reasons (max_steps, max_tokens,
// max_cost, timeout, model_error, sandbox_error, canceled) are used as they are; the runner adds
// its own.
type Reason string

// Reasons the runner adds to the agent loop's.
const (
	ReasonTimeout      Reason = "timeout"
	ReasonMaxSteps     Reason = "max_steps"
	ReasonMaxTokens    Reason = "max_tokens"
	ReasonMaxCost      Reason = "max_cost"
	ReasonModelError   Reason = "model_error"
	ReasonSandboxError Reason = "sandbox_error"
	ReasonCanceled     Reason = "canceled"
	// ReasonOOM: a process in the sandbox was killed by the sandbox's memory limit.
	ReasonOOM Reason = "oom"
	// ReasonPidsLimit: the sandbox hit its process limit.
	ReasonPidsLimit Reason = "pids_limit"
	// ReasonDiskFull: the sandbox's disk quota filled up.
	ReasonDiskFull Reason = "disk_full"
	// ReasonSetupFailed: a setup command failed (non-zero exit, timeout).
	ReasonSetupFailed Reason = "setup_failed"
	// ReasonCheckError: a check could not be carried out (the sandbox stopped answering).
	ReasonCheckError Reason = "check_error"
	// ReasonInternal: a bug or a host problem in the runner itself.
	ReasonInternal Reason = "internal_error"
)

// Finished reports whether a task result is final: a resumed run never runs it again. Only
// canceled tasks (an interrupted run, --fail-fast) are not.
func (r *TaskResult) Finished() bool {
	return r != nil && r.SchemaVersion == ResultSchema && r.Reason != ReasonCanceled &&
		(r.Status == StatusPassed || r.Status == StatusFailed || r.Status == StatusError)
}

// RunInfo is run.json: what ran, with what, where and when.
type RunInfo struct {
	SchemaVersion string `json:"schema_version"`
	// ID identifies the run (hex); the default results directory ends with its first 8 digits.
	ID string `json:"id"`
	// StartedAt is when the run (its first session) started; EndedAt when its last session ended
	// (zero while running).
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// Interrupted is set when the last session was interrupted (Ctrl-C, SIGTERM, --fail-fast).
	Interrupted bool `json:"interrupted"`
	// Versions of the programs involved.
	Versions Versions `json:"versions"`
	// Command is the command line (arguments that look like secrets are never recorded: keys
	// come from the environment).
	Command []string `json:"command,omitempty"`
	// Args are the spec arguments (files, globs, directories) as given.
	Args []string `json:"args"`
	// Flags are the command-line flags set explicitly.
	Flags map[string]string `json:"flags,omitempty"`
	// ConfigFile is the agent.yaml used.
	ConfigFile string `json:"config_file,omitempty"`
	// Backend is the default sandbox backend (tasks list their own); Runtime its OCI runtime when
	// local.
	Backend string `json:"backend"`
	Runtime string `json:"runtime,omitempty"`
	// Network lists the network modes the tasks run with.
	Network []string `json:"network"`
	// Model is the run's default model (--model or agent.yaml); tasks may name their own.
	Model string `json:"model,omitempty"`
	// Provider is the endpoint preset or base URL used for models without a prefix.
	Provider string `json:"provider,omitempty"`
	BaseURL  string `json:"base_url,omitempty"`
	// Replay is the transcript file or directory played back instead of a model.
	Replay string `json:"replay,omitempty"`
	// Concurrency is the number of tasks run at once.
	Concurrency int `json:"concurrency"`
	// Templates maps each template used to its digest.
	Templates map[string]string `json:"templates,omitempty"`
	// Tasks are the selected tasks.
	Tasks []RunTask `json:"tasks"`
	// Sessions lists each invocation that worked on this directory (the first run, then resumes).
	Sessions []Session `json:"sessions"`
}

// Versions are the versions of the programs a run used.
type Versions struct {
	Agent        string `json:"agent"`
	Go           string `json:"go"`
	EnvdProtocol string `json:"envd_protocol,omitempty"`
	Transcript   string `json:"transcript"`
}

// RunTask describes one selected task in run.json.
type RunTask struct {
	Name     string `json:"name"`
	File     string `json:"file"`
	Digest   string `json:"digest"`
	Model    string `json:"model"`
	Template string `json:"template"`
	Network  string `json:"network"`
	// Sandbox is the backend the task runs on; Runtime the OCI runtime its spec names (empty: the
	// run's runtime).
	Sandbox string   `json:"sandbox"`
	Runtime string   `json:"runtime,omitempty"`
	Repeat  int      `json:"repeat"`
	Tags    []string `json:"tags,omitempty"`
}

// Session is one invocation on a results directory.
type Session struct {
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	Resumed     bool       `json:"resumed"`
	Ran         int        `json:"ran"`
	Reused      int        `json:"reused"`
	Interrupted bool       `json:"interrupted"`
	Agent       string     `json:"agent_version"`
}

// TaskResult is result.json of one task epoch: how it ended, why, and what it cost. It is written
// last, when everything else of the task is on disk: its presence marks the task as ended.
type TaskResult struct {
	SchemaVersion string `json:"schema_version"`
	Task          string `json:"task"`
	// Epoch counts from 1; Epochs is the task's repeat.
	Epoch  int    `json:"epoch"`
	Epochs int    `json:"epochs"`
	Status Status `json:"status"`
	// Reason and Detail say why a task is in error (empty when it passed or failed).
	Reason Reason `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// SpecFile and SpecDigest identify the spec; with Model and Epoch they key the result for
	// --resume.
	SpecFile   string `json:"spec_file"`
	SpecDigest string `json:"spec_digest"`
	Model      string `json:"model"`
	// Seed is the sampling seed sent with every model call: derived from model, task and epoch,
	// so a rerun of the same cell asks for the same sampling (endpoints may ignore it).
	Seed *int64 `json:"seed,omitempty"`
	// Provider is the endpoint that served the model ("replay" for a replay).
	Provider string `json:"provider,omitempty"`
	// Replayed names the transcript played back, for a replay.
	Replayed string   `json:"replayed,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	// Sandbox describes the sandbox the task ran in.
	Sandbox *SandboxInfo `json:"sandbox,omitempty"`
	// Network is the task's network mode and, when the backend can tell, what its policy refused
	// (absent when no sandbox was made).
	Network *NetworkResult `json:"network,omitempty"`
	// StartedAt, EndedAt and DurationMS bound the whole task; Phases break it down.
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at"`
	DurationMS int64     `json:"duration_ms"`
	Phases     Phases    `json:"phases"`
	// Agent is how the agent loop went (absent when it never started).
	Agent *AgentResult `json:"agent,omitempty"`
	// Checks counts the checks.
	Checks CheckCounts `json:"checks"`
	// Artifacts lists the files collected (under files/) and those skipped.
	Artifacts *Artifacts `json:"artifacts,omitempty"`
	// Kept describes the sandbox kept after the task (--keep): paused, with the command to enter it.
	Kept *KeptSandbox `json:"kept,omitempty"`
	// ForkedFrom is the snapshot of the task's shared setup the sandbox was created from
	// (fork_setup): the setup ran once, in another epoch's sandbox.
	ForkedFrom string `json:"forked_from,omitempty"`
	// Resumed is set when the task continued an interrupted session in its kept sandbox.
	Resumed *Continued `json:"resumed,omitempty"`
	// Warnings are problems that did not decide the status (a sandbox that would not die, an
	// unreadable listing).
	Warnings []string `json:"warnings,omitempty"`
	// Dir is the task's directory, relative to the results directory.
	Dir string `json:"dir"`
}

// NetworkResult is a task's network mode and what its policy refused.
type NetworkResult struct {
	// Mode is none, internet or allow; Policy the whole policy (allow:example.com,10.0.0.0/8).
	Mode   string `json:"mode"`
	Policy string `json:"policy"`
	// Address is the sandbox's address on its link, when networked.
	Address string `json:"address,omitempty"`
	// Reported is set when the backend reported refusals (the fields below); a backend that cannot
	// tell leaves it false.
	Reported bool `json:"reported"`
	// Refused lists the refusals, at most MaxNetworkRefused of them: names the resolver would not
	// answer (kind dns), connections the egress proxy refused (tcp), destinations the firewall
	// refused (packet, with a count).
	Refused []RefusedConnection `json:"refused,omitempty"`
	// RefusedPackets counts every packet the firewall refused.
	RefusedPackets int64 `json:"refused_packets,omitempty"`
	// Error says why the report could not be read in full.
	Error string `json:"error,omitempty"`
}

// MaxNetworkRefused bounds NetworkResult.Refused.
const MaxNetworkRefused = 1000

// RefusedConnection is one refusal of a sandbox's network policy.
type RefusedConnection struct {
	Time time.Time `json:"time,omitzero"`
	// Kind is dns, tcp or packet.
	Kind string `json:"kind"`
	// Name is the DNS name, TLS server name or HTTP host; Addr the destination (ip:port).
	Name string `json:"name,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Proto is tcp, udp, icmp or a DNS record type.
	Proto  string `json:"proto,omitempty"`
	Reason string `json:"reason"`
	// Count is how many packets were refused (kind packet).
	Count int `json:"count,omitempty"`
}

// String describes the refusal on one line.
func (c RefusedConnection) String() string {
	what := c.Name
	if c.Addr != "" {
		if what != "" {
			what += " "
		}
		what += c.Addr
	}
	if c.Proto != "" {
		what += " (" + c.Proto + ")"
	}
	if c.Count > 1 {
		what += fmt.Sprintf(" ×%d", c.Count)
	}
	return fmt.Sprintf("%s %s: %s", c.Kind, what, c.Reason)
}

// Phases are the durations of a task's phases in milliseconds.
type Phases struct {
	SandboxMS   int64 `json:"sandbox_ms"`
	SeedMS      int64 `json:"seed_ms"`
	SetupMS     int64 `json:"setup_ms"`
	AgentMS     int64 `json:"agent_ms"`
	ModelMS     int64 `json:"model_ms"`
	ChecksMS    int64 `json:"checks_ms"`
	ArtifactsMS int64 `json:"artifacts_ms"`
	KillMS      int64 `json:"kill_ms"`
}

// AgentResult is how the agent loop ended.
type AgentResult struct {
	End         transcript.End   `json:"end"`
	Steps       int              `json:"steps"`
	Usage       transcript.Usage `json:"usage"`
	ToolCalls   int              `json:"tool_calls"`
	FinalAnswer string           `json:"final_answer,omitempty"`
}

// CheckCounts counts a task's checks.
type CheckCounts struct {
	Total  int `json:"total"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	// Skipped checks were not run (the task ended before them).
	Skipped int `json:"skipped"`
}

// ChecksDoc is checks.json: every check and its outcome.
type ChecksDoc struct {
	SchemaVersion string        `json:"schema_version"`
	Task          string        `json:"task"`
	Epoch         int           `json:"epoch"`
	Checks        []CheckResult `json:"checks"`
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	Name string         `json:"name"`
	Kind spec.CheckKind `json:"kind"`
	// Run or File is what the check looks at.
	Run  string `json:"run,omitempty"`
	File string `json:"file,omitempty"`
	// Line is where the check is written in the spec.
	Line int `json:"line,omitempty"`
	// Passed is the outcome; Skipped checks were not run; Reason says why one failed or was
	// skipped.
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Error is set when the check could not be carried out (the sandbox failed).
	Error string `json:"error,omitempty"`
	// ExitCode, Stdout and Stderr are a run check's (output clipped to MaxCheckOutput).
	ExitCode  *int   `json:"exit_code,omitempty"`
	TimedOut  bool   `json:"timed_out,omitempty"`
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// Size is a file check's file size.
	Size       *int64 `json:"size,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// Artifacts lists the files collected from a sandbox.
type Artifacts struct {
	// Mode is "changed" (every file created or changed under the workdir) or "globs".
	Mode  string         `json:"mode"`
	Globs []string       `json:"globs,omitempty"`
	Files []ArtifactFile `json:"files"`
	// Deleted lists files present after setup that the task removed (mode changed).
	Deleted []string `json:"deleted,omitempty"`
	// Skipped lists what was not collected, and why.
	Skipped []SkippedFile `json:"skipped,omitempty"`
	Bytes   int64         `json:"bytes"`
}

// ArtifactFile is one collected file, under files/ at its path relative to the workdir.
type ArtifactFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Mode   string `json:"mode"`
	SHA256 string `json:"sha256"`
	// New is set for a file created by the task (absent after setup).
	New bool `json:"new,omitempty"`
}

// SkippedFile is a file not collected.
type SkippedFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Summary is summary.json: the outcome of every selected task epoch.
type Summary struct {
	SchemaVersion string     `json:"schema_version"`
	RunID         string     `json:"run_id"`
	StartedAt     time.Time  `json:"started_at"`
	EndedAt       *time.Time `json:"ended_at,omitempty"`
	DurationMS    int64      `json:"duration_ms"`
	Interrupted   bool       `json:"interrupted"`
	// Counts: Total jobs; Passed, Failed, Error ended; NotRun never ended (interrupted, fail-fast).
	Total  int `json:"total"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	Error  int `json:"error"`
	NotRun int `json:"not_run"`
	// Tokens and CostUSD sum the model usage (cost only when prices were known).
	Tokens  int64    `json:"tokens"`
	CostUSD *float64 `json:"cost_usd,omitempty"`
	// OK is true when every task passed.
	OK    bool          `json:"ok"`
	Tasks []SummaryTask `json:"tasks"`
}

// SummaryTask is one task epoch in the summary.
type SummaryTask struct {
	Name   string `json:"name"`
	Epoch  int    `json:"epoch"`
	Status Status `json:"status,omitempty"`
	// NotRun is set for a task with no final result; Status is then empty.
	NotRun     bool        `json:"not_run,omitempty"`
	Reason     Reason      `json:"reason,omitempty"`
	Detail     string      `json:"detail,omitempty"`
	Steps      int         `json:"steps"`
	Tokens     int64       `json:"tokens"`
	DurationMS int64       `json:"duration_ms"`
	Checks     CheckCounts `json:"checks"`
	// FailedChecks names the checks that failed, with why.
	FailedChecks []FailedCheck `json:"failed_checks,omitempty"`
	// NetworkRefused counts the refusals of the task's network policy (result.json's
	// network.refused); NetworkSample describes the first few.
	NetworkRefused int      `json:"network_refused,omitempty"`
	NetworkSample  []string `json:"network_sample,omitempty"`
	// Reused is set when the result came from an earlier session (--resume).
	Reused bool `json:"reused,omitempty"`
	// Kept is the sandbox kept after the task (--keep).
	Kept *KeptSandbox `json:"kept,omitempty"`
	Dir  string       `json:"dir"`
}

// FailedCheck is a failing check in the summary.
type FailedCheck struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// taskDirName is a task epoch's directory relative to the results directory: tasks/<name> for a
// task run once, tasks/<name>/<epoch> for a repeated one.
func taskDirName(name string, epoch, epochs int) string {
	if epochs <= 1 {
		return filepath.Join(TasksDir, name)
	}
	return filepath.Join(TasksDir, name, strconv.Itoa(epoch))
}

// writeJSON writes v as indented JSON to path atomically (a temporary file renamed over it), so
// a reader, or a run killed mid-write, never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// maxResultFile bounds a result.json or run.json read back (resume).
const maxResultFile = 16 << 20

// readJSON reads a JSON file written by this package, bounded.
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxResultFile {
		return fmt.Errorf("%s: not a regular file of at most %d bytes", path, maxResultFile)
	}
	dec := json.NewDecoder(f)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}
