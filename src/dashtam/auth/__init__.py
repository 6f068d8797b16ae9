"""Users and authentication: passwords, sessions with rotating refresh tokens, access JWTs."""
