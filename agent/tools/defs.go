package tools

import "encoding/json"

// Spec describes a tool to the model.
type Spec struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments object.
	Parameters json.RawMessage
}

// Tool names. The first four, their schemas and descriptions are the tutorial's.
const (
	ReadFile      = "read_file"
	WriteFile     = "write_file"
	WriteFiles    = "write_files"
	RunCommands   = "run_commands"
	ListFiles     = "list_files"
	CommandOutput = "command_output"
	KillCommand   = "kill_command"
)

var specs = []Spec{
	{
		Name:        ReadFile,
		Description: "Read contents of a file inside the sandbox",
		Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}},` +
			`"required":["path"]}`),
	},
	{
		Name:        WriteFile,
		Description: "Write a single file inside the sandbox",
		Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},` +
			`"data":{"type":"string"}},"required":["path","data"]}`),
	},
	{
		Name:        WriteFiles,
		Description: "Write multiple files inside the sandbox",
		Parameters: json.RawMessage(`{"type":"object","properties":{"files":{"type":"array","items":` +
			`{"type":"object","properties":{"path":{"type":"string"},"data":{"type":"string"}},` +
			`"required":["path","data"]}}},"required":["files"]}`),
	},
	{
		Name:        RunCommands,
		Description: "Run a single shell command inside the sandbox working directory",
		// The tutorial's schema plus an optional background flag.
		Parameters: json.RawMessage(`{"type":"object","properties":{"command":{"type":"string"},` +
			`"background":{"type":"boolean","description":"Start the command in the background ` +
			`(servers, watchers) and return its pid at once; read its output with command_output ` +
			`and stop it with kill_command."}},"required":["command"]}`),
	},
	{
		Name:        ListFiles,
		Description: "List files and directories inside the sandbox",
		Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string",` +
			`"description":"Directory to list (default: the working directory)."},"depth":{"type":` +
			`"integer","description":"How many levels to descend (1 = direct children; default 1, ` +
			`at most 5)."}}}`),
	},
	{
		Name:        CommandOutput,
		Description: "Read what a background command printed since the last read, and whether it still runs",
		Parameters: json.RawMessage(`{"type":"object","properties":{"pid":{"type":"integer",` +
			`"description":"pid returned by run_commands with background: true"}},"required":["pid"]}`),
	},
	{
		Name:        KillCommand,
		Description: "Stop a background command",
		Parameters: json.RawMessage(`{"type":"object","properties":{"pid":{"type":"integer",` +
			`"description":"pid returned by run_commands with background: true"}},"required":["pid"]}`),
	},
}

// Specs returns the tools offered to the model, the tutorial's four first.
func Specs() []Spec {
	out := make([]Spec, len(specs))
	copy(out, specs)
	return out
}
