// Package actiontest tests the GitHub Action (action.yml at the repository root and its script
// .github/action/run.sh) outside GitHub: the metadata against the action metadata format, and the
// script run as a runner would run it (INPUT_* variables, GITHUB_STEP_SUMMARY, GITHUB_OUTPUT)
// against real sandboxes and a scripted model. It holds tests only.
package actiontest
