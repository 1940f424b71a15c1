"""The `llm` exercise kind: seed corpora, prompts, samplers, parsers, verifiers, the chain of steps
that turns an item into records, and the runner that sends its requests to the engines."""
