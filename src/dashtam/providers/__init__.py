"""Provider connections: OAuth with Charles Schwab (or the sandbox), encrypted tokens, audit."""
