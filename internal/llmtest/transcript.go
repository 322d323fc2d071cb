package llmtest

import "github.com/agentrun/agent/agent/transcript"

// TranscriptTurns returns the model's side of a recorded conversation as scripted turns: the
// content and tool calls of each assistant message, in order.
func TranscriptTurns(tr *transcript.Transcript) []Turn {
	var turns []Turn
	for _, m := range tr.Messages {
		if m.Role != "assistant" {
			continue
		}
		turn := Turn{Content: m.Content}
		for _, c := range m.ToolCalls {
			turn.ToolCalls = append(turn.ToolCalls, ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments})
		}
		turns = append(turns, turn)
	}
	return turns
}
